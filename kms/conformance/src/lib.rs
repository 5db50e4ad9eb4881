//! `kmip-conformance`: replays the OASIS KMIP test cases against a KMS and compares each
//! response with the one the case expects.
//!
//! - [`xml`]: the test-case files (KMIP's XML encoding) as a raw tree with placeholders;
//! - [`mod@resolve`]: XML values and placeholders → the TTLV request that is sent;
//! - [`mod@compare`]: actual vs expected response, with the documented tolerances;
//! - [`mod@chosen`]: which outputs of a step the server chooses (random, randomized, or made
//!   with a key it generated);
//! - [`run_case`]: one case, step by step, over a [`Transport`] ([`JsonHttps`]: `POST /kmip/2_1`
//!   with the JSON TTLV encoding; [`BinaryKmip`]: binary TTLV over mutual TLS on the KMIP
//!   port).
//!
//! The vendored cases live in `cases/` (see its README for origin and licence).

pub mod chosen;
pub mod compare;
pub mod resolve;
pub mod xml;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kms::kmip::ttlv::Ttlv;
use kms::kmip::{binary, json};

use crate::compare::compare;
use crate::resolve::{Context, resolve};
use crate::xml::{Case, parse_case};

/// Sends one `RequestMessage`, returns the `ResponseMessage`.
pub trait Transport {
    /// The encoding's name (for reports).
    fn name(&self) -> &'static str;
    /// One round trip; `Err` is a transport or decoding failure (described).
    fn send(&mut self, request: &Ttlv) -> Result<Ttlv, String>;
}

/// The JSON TTLV encoding over HTTPS (`POST /kmip/2_1`).
pub struct JsonHttps(pub ckms::http::HttpClient);

impl Transport for JsonHttps {
    fn name(&self) -> &'static str {
        "json"
    }

    fn send(&mut self, request: &Ttlv) -> Result<Ttlv, String> {
        let body = json::to_vec(request);
        let r = self
            .0
            .post("/kmip/2_1", &body)
            .map_err(|e| format!("transport: {e}"))?;
        if r.status != 200 {
            return Err(format!("HTTP {}: {}", r.status, r.text()));
        }
        json::from_slice(&r.body, &json::Limits::default())
            .map_err(|e| format!("response does not parse: {e}"))
    }
}

/// Binary TTLV (KMIP 2.1 §9.1) over mutual TLS on the KMIP port (5696 by default): each
/// `RequestMessage` framed by its own 8-byte header, answered in order on one connection
/// (reopened after the server closes it).
pub struct BinaryKmip {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    conn: Option<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
}

impl BinaryKmip {
    /// A client of the KMIP port at `addr`, with `tls` (CA roots and client identity).
    pub fn new(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> Self {
        BinaryKmip {
            addr,
            tls,
            conn: None,
        }
    }

    fn connect(&self) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
        let tcp = TcpStream::connect(self.addr).map_err(|e| format!("connect: {e}"))?;
        tcp.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| format!("socket: {e}"))?;
        let name = rustls_pki_types::ServerName::from(self.addr.ip());
        let conn = rustls::ClientConnection::new(self.tls.clone(), name)
            .map_err(|e| format!("TLS: {e}"))?;
        Ok(rustls::StreamOwned::new(conn, tcp))
    }

    fn exchange(&mut self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let mut s = match self.conn.take() {
            Some(s) => s,
            None => self.connect()?,
        };
        let io = |e: std::io::Error| format!("transport: {e}");
        s.write_all(bytes).map_err(io)?;
        s.flush().map_err(io)?;
        let mut head = [0u8; binary::HEADER_LEN];
        s.read_exact(&mut head).map_err(io)?;
        let len = binary::message_len(&head, 1 << 26)
            .map_err(|e| format!("response header: {e}"))?
            .ok_or("response header is not a TTLV message")?;
        let mut msg = head.to_vec();
        msg.resize(len, 0);
        s.read_exact(msg.get_mut(binary::HEADER_LEN..).unwrap_or_default())
            .map_err(io)?;
        self.conn = Some(s);
        Ok(msg)
    }
}

impl Transport for BinaryKmip {
    fn name(&self) -> &'static str {
        "binary"
    }

    fn send(&mut self, request: &Ttlv) -> Result<Ttlv, String> {
        let bytes = binary::to_vec(request)
            .map_err(|e| format!("request encoding: {e}{}", unencodable(request)))?;
        let msg = self.exchange(&bytes)?;
        let limits = json::Limits {
            max_bytes: 1 << 26,
            ..json::Limits::default()
        };
        binary::from_slice(&msg, &limits).map_err(|e| format!("response does not parse: {e}"))
    }
}

/// What the binary encoding cannot carry in `t` (for the error message): the first tag with
/// no code, or enumeration name its tag's enumeration does not know.
fn unencodable(t: &Ttlv) -> String {
    use kms::kmip::ttlv::{EnumValue, Value};
    if binary::code_of(&t.tag).is_none() {
        return format!(" (tag {})", t.tag);
    }
    match &t.value {
        Value::Enumeration(EnumValue::Name(n))
            if kms::kmip::types::enum_code(&t.tag, n).is_none() =>
        {
            format!(" ({} {n})", t.tag)
        }
        Value::Structure(c) => c
            .iter()
            .map(unencodable)
            .find(|s| !s.is_empty())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// How one case went.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// Case name.
    pub name: String,
    /// Steps in the case.
    pub steps: usize,
    /// `None` if every step matched; else the failing step and why.
    pub failure: Option<(usize, String)>,
}

impl CaseResult {
    /// True if every step matched.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// Runs every step of `case`; stops at the first mismatch.
pub fn run_case(case: &Case, transport: &mut dyn Transport, now: i64) -> CaseResult {
    let mut ctx = Context {
        now,
        ..Context::default()
    };
    let failure = case.steps.iter().enumerate().find_map(|(i, step)| {
        let outcome = resolve(&step.request, &ctx)
            .map_err(|e| format!("request: {e}"))
            .and_then(|req| {
                ctx.note_sent(&req);
                ctx.free_data = chosen::free_data(&req, &ctx);
                transport.send(&req).map(|resp| (req, resp))
            })
            .and_then(|(req, resp)| {
                compare(&step.response, &resp, &mut ctx)
                    .map_err(|m| format!("{m}{}", server_message(&resp)))?;
                chosen::learn(&req, &resp, &mut ctx);
                Ok(())
            });
        outcome.err().map(|e| (i, e))
    });
    CaseResult {
        name: case.name.clone(),
        steps: case.steps.len(),
        failure,
    }
}

/// The first `ResultMessage` of a response, as ` (server: …)`, to explain a failed step.
fn server_message(resp: &Ttlv) -> String {
    fn find(t: &Ttlv) -> Option<&str> {
        match &t.value {
            kms::kmip::ttlv::Value::TextString(s) if t.tag == "ResultMessage" => Some(s),
            kms::kmip::ttlv::Value::Structure(c) => c.iter().find_map(find),
            _ => None,
        }
    }
    find(resp).map_or_else(String::new, |m| format!(" (server: {m})"))
}

/// The vendored KMIP 2.1 mandatory cases.
pub fn mandatory_2_1() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cases/kmip-2.1/mandatory")
}

/// The vendored KMIP 1.4 mandatory cases (protocol version 1.4 in every request header).
pub fn mandatory_1_4() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cases/kmip-1.4/mandatory")
}

/// Reads every `*.xml` case in `dir`, sorted by name.
pub fn load_dir(dir: &Path) -> Result<Vec<Case>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let name = p.file_stem().map(|s| s.to_string_lossy().into_owned());
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let mut case = parse_case(name.as_deref().unwrap_or("?"), &text)
                .map_err(|e| format!("{}: {e}", p.display()))?;
            for step in &mut case.steps {
                resolve::type_attribute_values(&mut step.request);
                resolve::type_attribute_values(&mut step.response);
            }
            Ok(case)
        })
        .collect()
}
