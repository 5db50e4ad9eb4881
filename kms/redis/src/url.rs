//! `redis://[user:pass@]host:port[/db]` URLs.
//!
//! Grammar follows the IANA `redis` URI scheme registration
//! (<https://www.iana.org/assignments/uri-schemes/prov/redis>): userinfo is `user:password` (an empty user
//! means the legacy single-password `AUTH`), host is a name or an IPv4 literal (IPv6 literals in
//! brackets are accepted), the port defaults to 6379 and the path is the logical database number.
//! Percent-encoding in the userinfo is decoded. `rediss://` (TLS) is not supported.

use alloc::string::String;
use core::fmt;
use zeroize::Zeroize;

/// A parsed Redis URL. The password is zeroized on drop and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// ACL user name for `AUTH user pass` (None: `AUTH pass` or no auth).
    pub user: Option<String>,
    /// Password for `AUTH`.
    pub password: Option<String>,
    /// Logical database for `SELECT` (0 is the default and is not selected explicitly).
    pub db: u32,
}

impl Drop for RedisUrl {
    fn drop(&mut self) {
        if let Some(p) = self.password.as_mut() {
            p.zeroize();
        }
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .finish()
    }
}

impl fmt::Display for RedisUrl {
    /// Prints the URL without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("redis://")?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        } else if self.password.is_some() {
            f.write_str(":***@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}/{}", self.host, self.port, self.db)
        } else {
            write!(f, "{}:{}/{}", self.host, self.port, self.db)
        }
    }
}

/// Why a Redis URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlError {
    /// The scheme is not `redis://`.
    Scheme,
    /// The host is empty or holds characters a host cannot hold.
    Host,
    /// The port is not a number in 1..=65535.
    Port,
    /// The database number is not a decimal u32.
    Database,
    /// Bad percent-encoding or non-UTF-8 in the user or password.
    Userinfo,
    /// Query strings and fragments are not supported.
    Unsupported,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UrlError::Scheme => "Redis URL must start with redis://",
            UrlError::Host => "Redis URL has an empty or invalid host",
            UrlError::Port => "Redis URL has an invalid port",
            UrlError::Database => "Redis URL has an invalid database number",
            UrlError::Userinfo => "Redis URL has an invalid user or password encoding",
            UrlError::Unsupported => "Redis URL query strings and fragments are not supported",
        })
    }
}

impl core::error::Error for UrlError {}

impl RedisUrl {
    /// Parse `redis://[user:pass@]host[:port][/db]`.
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let rest = s.strip_prefix("redis://").ok_or(UrlError::Scheme)?;
        if rest.contains('?') || rest.contains('#') {
            return Err(UrlError::Unsupported);
        }
        // authority ends at the first '/'.
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        // userinfo ends at the last '@' (passwords may hold '@' only percent-encoded, but be lenient).
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => {
                let (u, p) = match ui.find(':') {
                    Some(i) => (&ui[..i], Some(&ui[i + 1..])),
                    None => (ui, None),
                };
                let user = if u.is_empty() {
                    None
                } else {
                    Some(percent_decode(u)?)
                };
                let password = match p {
                    Some(p) => Some(percent_decode(p)?),
                    None => None,
                };
                (user, password)
            }
        };
        let (host, port) = split_host_port(hostport)?;
        let db = if path.is_empty() {
            0
        } else if path.bytes().all(|b| b.is_ascii_digit()) && path.len() <= 10 {
            path.parse::<u32>().map_err(|_| UrlError::Database)?
        } else {
            return Err(UrlError::Database);
        };
        Ok(RedisUrl {
            host,
            port,
            user,
            password,
            db,
        })
    }
}

fn split_host_port(hp: &str) -> Result<(String, u16), UrlError> {
    let (host, port) = if let Some(inner) = hp.strip_prefix('[') {
        let end = inner.find(']').ok_or(UrlError::Host)?;
        let host = &inner[..end];
        let after = &inner[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(UrlError::Host),
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(UrlError::Host);
        }
        (host, port)
    } else {
        let (host, port) = match hp.rfind(':') {
            Some(i) => (&hp[..i], Some(&hp[i + 1..])),
            None => (hp, None),
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return Err(UrlError::Host);
        }
        (host, port)
    };
    let port = match port {
        None => 6379,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(UrlError::Port),
                Ok(n) => n,
            }
        }
        Some(_) => return Err(UrlError::Port),
    };
    Ok((String::from(host), port))
}

/// `%XX` escapes of the userinfo, with the core's decoder (the one the HTTP paths use).
fn percent_decode(s: &str) -> Result<String, UrlError> {
    kms::http::percent_decode(s).map_err(|_| UrlError::Userinfo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_url() {
        let u = RedisUrl::parse("redis://alice:s%40cret@db.example:6380/3").unwrap();
        assert_eq!(u.host, "db.example");
        assert_eq!(u.port, 6380);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("s@cret"));
        assert_eq!(u.db, 3);
        let shown = alloc::format!("{u} {u:?}");
        assert!(!shown.contains("s@cret"), "{shown}");
    }

    #[test]
    fn defaults_and_password_only() {
        let u = RedisUrl::parse("redis://127.0.0.1").unwrap();
        assert_eq!(
            (u.port, u.db, u.user.is_none(), u.password.is_none()),
            (6379, 0, true, true)
        );
        let u = RedisUrl::parse("redis://:pw@[::1]:7000/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.user.is_none()),
            ("::1", 7000, true)
        );
        assert_eq!(u.password.as_deref(), Some("pw"));
    }

    #[test]
    fn refusals() {
        assert_eq!(RedisUrl::parse("http://h:1"), Err(UrlError::Scheme));
        assert_eq!(RedisUrl::parse("redis://:1"), Err(UrlError::Host));
        assert_eq!(RedisUrl::parse("redis://h:0"), Err(UrlError::Port));
        assert_eq!(RedisUrl::parse("redis://h:70000"), Err(UrlError::Port));
        assert_eq!(RedisUrl::parse("redis://h:"), Err(UrlError::Port));
        assert_eq!(RedisUrl::parse("redis://h:1/x"), Err(UrlError::Database));
        assert_eq!(
            RedisUrl::parse("redis://h:1/99999999999"),
            Err(UrlError::Database)
        );
        assert_eq!(RedisUrl::parse("redis://u:%zz@h"), Err(UrlError::Userinfo));
        assert_eq!(
            RedisUrl::parse("redis://h/0?x=1"),
            Err(UrlError::Unsupported)
        );
        assert_eq!(RedisUrl::parse("redis://h h:1"), Err(UrlError::Host));
    }
}
