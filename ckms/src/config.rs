//! Connection settings: command-line flags over a TOML file (`$CKMS_CONF`, else
//! `~/.config/ckms/ckms.toml`), with the same key names:
//!
//! ```toml
//! url = "https://127.0.0.1:9998"
//! ca_cert = "/path/ca.pem"
//! client_cert = "/path/alice.pem"
//! client_key = "/path/alice.key"
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::http::{self, ClientIdentity, HttpClient, HttpError};

/// Settings read from the file or the flags.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Server URL, `https://host:port`.
    pub url: Option<String>,
    /// CA certificate (PEM) that signed the server certificate.
    pub ca_cert: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS.
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM) for mTLS.
    pub client_key: Option<PathBuf>,
}

/// Configuration errors.
#[derive(Debug)]
pub enum ConfigError {
    /// The file exists but cannot be read or parsed.
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A required setting is missing.
    Missing(&'static str),
    /// Building the TLS client failed.
    Http(HttpError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::File { path, reason } => {
                write!(f, "configuration file {}: {reason}", path.display())
            }
            ConfigError::Missing(what) => write!(
                f,
                "no {what} given: pass --{} or set it in the configuration file",
                what.replace('_', "-")
            ),
            ConfigError::Http(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The configuration file to read: `$CKMS_CONF`, else `~/.config/ckms/ckms.toml`.
pub fn default_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CKMS_CONF") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".config/ckms/ckms.toml"))
}

impl Settings {
    /// Read a TOML settings file. A missing file gives empty settings unless `required`.
    pub fn from_file(path: &Path, required: bool) -> Result<Settings, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Settings::default());
            }
            Err(e) => {
                return Err(ConfigError::File {
                    path: path.to_owned(),
                    reason: e.to_string(),
                });
            }
        };
        toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Flags win over the file, key by key. Relative paths in the file are relative to it.
    pub fn merge(flags: Settings, file: Settings, file_dir: Option<&Path>) -> Settings {
        let rel = |p: PathBuf| match file_dir {
            Some(d) if p.is_relative() => d.join(p),
            _ => p,
        };
        Settings {
            url: flags.url.or(file.url),
            ca_cert: flags.ca_cert.or(file.ca_cert.map(rel)),
            client_cert: flags.client_cert.or(file.client_cert.map(rel)),
            client_key: flags.client_key.or(file.client_key.map(rel)),
        }
    }

    /// The TLS client configuration these settings describe.
    pub fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, ConfigError> {
        let ca = self
            .ca_cert
            .as_deref()
            .ok_or(ConfigError::Missing("ca_cert"))?;
        let ca = http::load_certs(ca).map_err(ConfigError::Http)?;
        let identity = match (&self.client_cert, &self.client_key) {
            (Some(c), Some(k)) => {
                Some(ClientIdentity::from_pem_files(c, k).map_err(ConfigError::Http)?)
            }
            (None, None) => None,
            (Some(_), None) => return Err(ConfigError::Missing("client_key")),
            (None, Some(_)) => return Err(ConfigError::Missing("client_cert")),
        };
        http::client_config(ca, identity).map_err(ConfigError::Http)
    }

    /// An HTTPS client for the configured server.
    pub fn client(&self) -> Result<HttpClient, ConfigError> {
        let url = self.url.as_deref().ok_or(ConfigError::Missing("url"))?;
        HttpClient::new(url, self.tls_config()?).map_err(ConfigError::Http)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags() {
        let file: Settings =
            toml::from_str("url = \"https://a:1\"\nca_cert = \"ca.pem\"\nclient_key = \"/k\"\n")
                .unwrap();
        let flags = Settings {
            url: Some("https://b:2".into()),
            ..Settings::default()
        };
        let m = Settings::merge(flags, file, Some(Path::new("/etc/ckms")));
        assert_eq!(m.url.as_deref(), Some("https://b:2"));
        assert_eq!(m.ca_cert.as_deref(), Some(Path::new("/etc/ckms/ca.pem")));
        assert_eq!(m.client_key.as_deref(), Some(Path::new("/k")));
        assert!(matches!(
            toml::from_str::<Settings>("bogus = 1"),
            Err(e) if e.message().contains("unknown field `bogus`")
        ));
    }
}
