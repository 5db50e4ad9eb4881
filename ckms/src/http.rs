//! A small HTTP/1.1 client over rustls (ring provider): one keep-alive connection per
//! [`HttpClient`], `Content-Length` framing only.
//!
//! [`client_config`] builds the TLS client configuration that verifies the server against a CA
//! (the system's trust store is never used: the KMS's CA is given explicitly) and optionally
//! presents a client certificate (mTLS). [`client_config_with_verifier`] accepts any other
//! server-certificate verifier (e.g. a pinned-key or RA-TLS verifier).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::ServerCertVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Largest response head and body the client accepts.
const MAX_HEAD: usize = 64 * 1024;
/// Largest response body the client accepts.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// Client-side errors.
#[derive(Debug)]
pub enum HttpError {
    /// The URL is not `https://host[:port][/prefix]`.
    Url(String),
    /// A PEM file could not be read or is unusable.
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls rejected the configuration.
    Tls(String),
    /// Connecting, TLS handshake (e.g. certificate verification), reading or writing failed.
    Io(io::Error),
    /// The server's answer is not valid HTTP/1.1.
    Protocol(&'static str),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Url(m) => write!(f, "invalid URL: {m}"),
            HttpError::Pem { path, reason } => write!(f, "{}: {reason}", path.display()),
            HttpError::Tls(m) => write!(f, "TLS configuration: {m}"),
            HttpError::Io(e) => write!(f, "{e}"),
            HttpError::Protocol(m) => write!(f, "invalid HTTP response: {m}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<io::Error> for HttpError {
    fn from(e: io::Error) -> Self {
        HttpError::Io(e)
    }
}

/// The crypto provider (ring).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Read every certificate of a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, HttpError> {
    let pem = read_pem(path)?;
    let certs = kms::x509::pem_chain_der(&pem).map_err(|e| pem_error(path, e))?;
    Ok(certs.into_iter().map(CertificateDer::from).collect())
}

/// Read the first private key (PKCS#8, SEC1 or PKCS#1) of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, HttpError> {
    let pem = read_pem(path)?;
    let key = kms::x509::PrivateKey::from_pem(&pem).map_err(|e| pem_error(path, e))?;
    Ok(match &key {
        kms::x509::PrivateKey::Pkcs8(d) => PrivateKeyDer::Pkcs8(d.clone().into()),
        kms::x509::PrivateKey::Sec1(d) => PrivateKeyDer::Sec1(d.clone().into()),
        kms::x509::PrivateKey::Pkcs1(d) => PrivateKeyDer::Pkcs1(d.clone().into()),
    })
}

fn read_pem(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, HttpError> {
    std::fs::read(path)
        .map(zeroize::Zeroizing::new)
        .map_err(|e| HttpError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

fn pem_error(path: &Path, e: kms::x509::PemError) -> HttpError {
    HttpError::Pem {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// A client certificate chain and its key (mTLS).
pub struct ClientIdentity {
    /// Certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Private key of the leaf.
    pub key: PrivateKeyDer<'static>,
}

impl ClientIdentity {
    /// Load from PEM files.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, HttpError> {
        Ok(ClientIdentity {
            chain: load_certs(cert)?,
            key: load_key(key)?,
        })
    }
}

/// TLS client configuration that verifies the server against the CA certificates in
/// `ca_certs` (WebPKI rules: chain to the CA, validity, server name).
pub fn client_config(
    ca_certs: Vec<CertificateDer<'static>>,
    identity: Option<ClientIdentity>,
) -> Result<Arc<ClientConfig>, HttpError> {
    let mut roots = RootCertStore::empty();
    for ca in ca_certs {
        roots.add(ca).map_err(|e| HttpError::Tls(e.to_string()))?;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    finish(builder, identity)
}

/// TLS client configuration with a custom server-certificate verifier.
pub fn client_config_with_verifier(
    verifier: Arc<dyn ServerCertVerifier>,
    identity: Option<ClientIdentity>,
) -> Result<Arc<ClientConfig>, HttpError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    finish(builder, identity)
}

fn finish(
    builder: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>,
    identity: Option<ClientIdentity>,
) -> Result<Arc<ClientConfig>, HttpError> {
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain, id.key)
            .map_err(|e| HttpError::Tls(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A parsed `https://host[:port][/prefix]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// Host name or IP address (without brackets).
    pub host: String,
    /// TCP port (443 when absent).
    pub port: u16,
    /// Path prefix without trailing slash (often empty).
    pub prefix: String,
}

impl ServerUrl {
    /// Parse a URL; only `https` is accepted.
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        let bad = |m: &str| HttpError::Url(format!("{url}: {m}"));
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| bad("must start with https://"))?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("junk after ']'")),
            };
            (h, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("invalid port"))?,
            None => 443,
        };
        Ok(ServerUrl {
            host: host.to_owned(),
            port,
            prefix: prefix.trim_end_matches('/').to_owned(),
        })
    }
}

/// A response: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as text (lossy), for error messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One keep-alive HTTPS connection to a server, opened on first use and reopened when the
/// server closed it.
pub struct HttpClient {
    url: ServerUrl,
    tls: Arc<ClientConfig>,
    timeout: Duration,
    conn: Option<StreamOwned<ClientConnection, TcpStream>>,
}

impl HttpClient {
    /// A client for `url` with the given TLS configuration. Nothing is connected yet.
    pub fn new(url: &str, tls: Arc<ClientConfig>) -> Result<Self, HttpError> {
        Ok(HttpClient {
            url: ServerUrl::parse(url)?,
            tls,
            timeout: Duration::from_secs(60),
            conn: None,
        })
    }

    /// Change the socket read/write timeout (default 60 s).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The server URL.
    pub fn url(&self) -> &ServerUrl {
        &self.url
    }

    fn connect(&self) -> Result<StreamOwned<ClientConnection, TcpStream>, HttpError> {
        let tcp = TcpStream::connect((self.url.host.as_str(), self.url.port))?;
        tcp.set_read_timeout(Some(self.timeout))?;
        tcp.set_write_timeout(Some(self.timeout))?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(self.url.host.clone())
            .map_err(|_| HttpError::Url(format!("invalid host name {}", self.url.host)))?;
        let conn = ClientConnection::new(self.tls.clone(), name)
            .map_err(|e| HttpError::Tls(e.to_string()))?;
        let mut stream = StreamOwned::new(conn, tcp);
        // Finish the handshake now so that certificate errors surface here.
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(stream)
    }

    /// Send one request and read its response. A reused connection that turns out to be closed
    /// is reopened once.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<HttpResponse, HttpError> {
        let mut head = format!(
            "{method} {}{path} HTTP/1.1\r\nhost: {}\r\n",
            self.url.prefix, self.url.host
        );
        if let Some(b) = body {
            head.push_str(&format!(
                "content-type: application/json\r\ncontent-length: {}\r\n",
                b.len()
            ));
        }
        head.push_str("\r\n");
        let reused = self.conn.is_some();
        match self.exchange(head.as_bytes(), body) {
            Err(HttpError::Io(e)) if reused && is_stale(&e) => {
                self.conn = None;
                self.exchange(head.as_bytes(), body)
            }
            other => other,
        }
    }

    fn exchange(&mut self, head: &[u8], body: Option<&[u8]>) -> Result<HttpResponse, HttpError> {
        let mut stream = match self.conn.take() {
            Some(s) => s,
            None => self.connect()?,
        };
        let mut msg = Vec::with_capacity(head.len() + body.map_or(0, <[u8]>::len));
        msg.extend_from_slice(head);
        msg.extend_from_slice(body.unwrap_or(&[]));
        stream.write_all(&msg)?;
        stream.flush()?;
        let (response, keep) = read_response(&mut stream)?;
        if keep {
            self.conn = Some(stream);
        }
        Ok(response)
    }

    /// Connects and completes a TLS handshake, and returns the server's leaf certificate (DER) as
    /// the completed handshake authenticated it: the verifier accepted it, the server proved
    /// possession of its key (CertificateVerify) and the Finished messages checked. The connection
    /// is kept for the next request.
    pub fn handshake(&mut self) -> Result<Vec<u8>, HttpError> {
        let stream = match self.conn.take() {
            Some(s) => s,
            None => self.connect()?,
        };
        let leaf = stream
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .ok_or_else(|| HttpError::Tls("the server sent no certificate".into()))?;
        self.conn = Some(stream);
        Ok(leaf)
    }

    /// `GET path`.
    pub fn get(&mut self, path: &str) -> Result<HttpResponse, HttpError> {
        self.request("GET", path, None)
    }

    /// `POST path` with a JSON body.
    pub fn post(&mut self, path: &str, body: &[u8]) -> Result<HttpResponse, HttpError> {
        self.request("POST", path, Some(body))
    }
}

fn is_stale(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// Read one response; returns it and whether the connection can be reused.
fn read_response(stream: &mut impl Read) -> Result<(HttpResponse, bool), HttpError> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let status = resp.code.ok_or(HttpError::Protocol("no status"))?;
                let mut length = None;
                let mut close = resp.version == Some(0);
                for h in resp.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        let v = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|s| s.trim().parse::<usize>().ok())
                            .ok_or(HttpError::Protocol("bad content-length"))?;
                        length = Some(v);
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        close = h.value.eq_ignore_ascii_case(b"close");
                    }
                }
                let length = length.ok_or(HttpError::Protocol("no content-length"))?;
                if length > MAX_BODY {
                    return Err(HttpError::Protocol("response body too large"));
                }
                let total = head_len
                    .checked_add(length)
                    .ok_or(HttpError::Protocol("response body too large"))?;
                while buf.len() < total {
                    let n = stream.read(&mut chunk)?;
                    if n == 0 {
                        return Err(HttpError::Io(io::ErrorKind::UnexpectedEof.into()));
                    }
                    buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
                }
                let body = buf.get(head_len..total).unwrap_or(&[]).to_vec();
                return Ok((HttpResponse { status, body }, !close));
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_HEAD {
                    return Err(HttpError::Protocol("response head too large"));
                }
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return Err(HttpError::Io(io::ErrorKind::UnexpectedEof.into()));
                }
                buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
            }
            Err(_) => return Err(HttpError::Protocol("malformed response head")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = ServerUrl::parse("https://127.0.0.1:9998").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("127.0.0.1", 9998, "")
        );
        let u = ServerUrl::parse("https://kms.example/api/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("kms.example", 443, "/api")
        );
        let u = ServerUrl::parse("https://[::1]:8443").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 8443));
        for bad in ["http://x", "https://x:notaport", "https://:1"] {
            let r = ServerUrl::parse(bad);
            assert!(
                matches!(&r, Err(HttpError::Url(m)) if m.starts_with(bad)),
                "{bad}: {:?}",
                r.err()
            );
        }
    }

    #[test]
    fn response_framing() {
        let raw = b"HTTP/1.1 422 Unprocessable Content\r\ncontent-length: 3\r\n\r\nbadEXTRA";
        let (r, keep) = read_response(&mut &raw[..]).unwrap();
        assert_eq!(r.status, 422);
        assert_eq!(r.body, b"bad");
        assert!(keep);
        let raw = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        let (_, keep) = read_response(&mut &raw[..]).unwrap();
        assert!(!keep);
        let truncated = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc";
        assert!(matches!(
            read_response(&mut &truncated[..]),
            Err(HttpError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof
        ));
        assert!(matches!(
            read_response(&mut &b"garbage\r\n\r\n"[..]),
            Err(HttpError::Protocol("malformed response head"))
        ));
    }
}
