//! The VCEK and AMD's chain from AMD's Key Distribution Service, for quotes that carry no certificate table.
//!
//! A report's signature is checked with the VCEK of its chip at its reported TCB. A host that runs the guest
//! with an extended guest request fills a certificate table (VCEK, ASK, ARK) and the quote carries it; a host
//! that does not leaves the table empty, and the verifier gets the certificates elsewhere: from AMD's KDS
//! (`--kds-url`), or offline from files (`--vcek FILE` and `--cert-chain FILE`, e.g. downloaded once from the
//! same URLs).
//!
//! URL layout (AMD "Versioned Chip Endorsement Key (VCEK) Certificate and KDS Interface Specification",
//! 57230, chapter 4), relative to the base URL (default [`DEFAULT_KDS_URL`]):
//! - VCEK (DER): `/vcek/v1/{product}/{hwid}?blSPL=BL&teeSPL=TEE&snpSPL=SNP&ucodeSPL=UCODE`, where `product`
//!   is `Milan`, `Genoa` or `Turin`, `hwid` the report's `CHIP_ID` in lowercase hex (all 64 bytes; for Turin
//!   the first 8, the length of its VCEK's hwID), and the SPLs the report's `REPORTED_TCB` components in
//!   decimal, two digits at least; Turin's query starts with `fmcSPL=FMC&`.
//! - ASK and ARK (PEM, ASK first): `/vcek/v1/{product}/cert_chain`.
//!
//! What comes back is not trusted for being fetched: [`Kds::vcek_for_report`] checks that the VCEK is a DER
//! certificate for the report's chip and TCB (`attest::verify::check_vcek_for_report`), and the report's
//! verification then checks the chain ARK → ASK → VCEK to AMD's built-in roots (or to `--trust-root`) and the
//! report signature. The HTTPS connection only protects availability; the server is verified against the
//! CA certificates given ([`SYSTEM_CA_BUNDLE`] by default). Responses must use `Content-Length` framing
//! ([`crate::http`]).

use std::fmt;

use attest::snp::{AttestationReport, Generation, TcbVersion};
use attest::verify::{VerifyError, check_vcek_for_report};
use der::Decode;
use rustls_pki_types::CertificateDer;
use x509_cert::Certificate;

use crate::http::{self, HttpClient, HttpError};

/// AMD's KDS.
pub const DEFAULT_KDS_URL: &str = "https://kdsintf.amd.com";
/// The CA certificates that verify the KDS's HTTPS server by default (Debian's system bundle).
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why the KDS gave no usable certificate.
#[derive(Debug)]
pub enum KdsError {
    /// The base URL is not `https://host[:port][/prefix]`, or the connection failed.
    Http {
        /// The URL asked.
        url: String,
        /// What failed.
        error: HttpError,
    },
    /// 404: the KDS has no VCEK for this chip and TCB (or no such product).
    NotFound {
        /// The URL asked.
        url: String,
    },
    /// Another non-200 status (429: rate-limited).
    Status {
        /// The URL asked.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The VCEK answer is not a DER X.509 certificate.
    BadDer {
        /// The URL asked.
        url: String,
    },
    /// The `cert_chain` answer is not two PEM certificates (ASK, ARK).
    BadChain {
        /// The URL asked.
        url: String,
    },
    /// The report names no product (version 2 reports carry no CPUID): give `--vcek` instead.
    UnknownProduct,
    /// The report does not parse.
    Report(VerifyError),
    /// The VCEK is for another chip (its hwID is not the report's `CHIP_ID`).
    WrongChip,
    /// The VCEK is for another TCB.
    WrongTcb {
        /// The SPL that differs (`blSPL`, ...).
        field: &'static str,
        /// The VCEK's value.
        cert: u8,
        /// The report's value.
        report: u8,
    },
    /// The VCEK does not fit the report otherwise (product, a VLEK, missing extensions).
    BadVcek(VerifyError),
}

impl fmt::Display for KdsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http { url, error } => write!(f, "KDS {url}: {error}"),
            Self::NotFound { url } => write!(
                f,
                "KDS {url}: not found (no VCEK for this chip and TCB; give --vcek FILE)"
            ),
            Self::Status { url, status } => write!(f, "KDS {url}: HTTP {status}"),
            Self::BadDer { url } => write!(f, "KDS {url}: the answer is not a DER certificate"),
            Self::BadChain { url } => write!(
                f,
                "KDS {url}: the answer is not a PEM chain of two certificates (ASK, ARK)"
            ),
            Self::UnknownProduct => f.write_str(
                "the report names no product (version 2): the KDS cannot be asked; give --vcek FILE",
            ),
            Self::Report(e) => write!(f, "report: {e}"),
            Self::WrongChip => f.write_str("the KDS's VCEK is for another chip (hwID differs from CHIP_ID)"),
            Self::WrongTcb {
                field,
                cert,
                report,
            } => write!(
                f,
                "the KDS's VCEK is for another TCB: {field} {cert}, the report's {report}"
            ),
            Self::BadVcek(e) => write!(f, "the KDS's VCEK does not fit the report: {e}"),
        }
    }
}

impl std::error::Error for KdsError {}

/// The KDS path of the VCEK of `chip_id` at `tcb` (see the module documentation).
pub fn vcek_path(generation: Generation, chip_id: &[u8; 64], tcb: &TcbVersion) -> String {
    let (hwid, fmc) = match generation {
        Generation::Turin => (
            hex::encode(chip_id.get(..8).unwrap_or_default()),
            format!("fmcSPL={:02}&", tcb.fmc),
        ),
        Generation::Milan | Generation::Genoa => (hex::encode(chip_id), String::new()),
    };
    format!(
        "/vcek/v1/{}/{hwid}?{fmc}blSPL={:02}&teeSPL={:02}&snpSPL={:02}&ucodeSPL={:02}",
        generation.name(),
        tcb.bootloader,
        tcb.tee,
        tcb.snp,
        tcb.microcode
    )
}

/// The KDS path of a product's ASK and ARK.
pub fn cert_chain_path(generation: Generation) -> String {
    format!("/vcek/v1/{}/cert_chain", generation.name())
}

/// A KDS client (one HTTPS connection).
pub struct Kds {
    client: HttpClient,
    base: String,
}

impl fmt::Debug for Kds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kds").field("base", &self.base).finish()
    }
}

impl Kds {
    /// A client for the KDS at `base_url` (`https://…`), whose server certificate must chain to `ca`.
    pub fn new(base_url: &str, ca: Vec<CertificateDer<'static>>) -> Result<Self, KdsError> {
        let http = |error| KdsError::Http {
            url: base_url.to_owned(),
            error,
        };
        let tls = http::client_config(ca, None).map_err(http)?;
        let client = HttpClient::new(base_url.trim_end_matches('/'), tls).map_err(http)?;
        Ok(Self {
            client,
            base: base_url.trim_end_matches('/').to_owned(),
        })
    }

    fn get(&mut self, path: &str) -> Result<Vec<u8>, KdsError> {
        let url = format!("{}{path}", self.base);
        let resp = self.client.get(path).map_err(|error| KdsError::Http {
            url: url.clone(),
            error,
        })?;
        match resp.status {
            200 => Ok(resp.body),
            404 => Err(KdsError::NotFound { url }),
            status => Err(KdsError::Status { url, status }),
        }
    }

    /// The VCEK (DER) of the chip and reported TCB of `report` (0x4A0 bytes), checked to be a certificate
    /// for exactly that chip and TCB.
    pub fn vcek_for_report(&mut self, report: &[u8]) -> Result<Vec<u8>, KdsError> {
        let r = AttestationReport::parse(report)
            .map_err(|e| KdsError::Report(VerifyError::Report(e)))?;
        let g = r.generation().ok_or(KdsError::UnknownProduct)?;
        let path = vcek_path(g, &r.chip_id, &r.reported_tcb(g));
        let der = self.get(&path)?;
        if Certificate::from_der(&der).is_err() {
            return Err(KdsError::BadDer {
                url: format!("{}{path}", self.base),
            });
        }
        match check_vcek_for_report(report, &der) {
            Ok(_) => Ok(der),
            Err(VerifyError::ChipIdMismatch) => Err(KdsError::WrongChip),
            Err(VerifyError::TcbMismatch {
                field,
                cert,
                report,
            }) => Err(KdsError::WrongTcb {
                field,
                cert,
                report,
            }),
            Err(e) => Err(KdsError::BadVcek(e)),
        }
    }

    /// The product's `cert_chain` (PEM: ASK then ARK), checked to hold two certificates.
    pub fn cert_chain(&mut self, generation: Generation) -> Result<Vec<u8>, KdsError> {
        let path = cert_chain_path(generation);
        let pem = self.get(&path)?;
        match Certificate::load_pem_chain(pem.trim_ascii()) {
            Ok(certs) if certs.len() == 2 => Ok(pem),
            _ => Err(KdsError::BadChain {
                url: format!("{}{path}", self.base),
            }),
        }
    }
}

/// A stand-in KDS for tests: HTTPS on 127.0.0.1 (a throw-away CA), fixed answers per path, every path
/// asked recorded.
#[cfg(test)]
pub(crate) mod stand_in {
    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    use rustls::{ServerConfig, ServerConnection, StreamOwned};
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    /// A running stand-in (its thread lives as long as the test process).
    pub(crate) struct StandIn {
        /// `https://127.0.0.1:PORT`.
        pub url: String,
        /// The CA that issued its certificate.
        pub ca: Vec<CertificateDer<'static>>,
        /// The paths asked, in order.
        pub asked: Arc<Mutex<Vec<String>>>,
    }

    impl StandIn {
        /// Serves `routes` (path with query -> status, body); anything else is 404.
        pub(crate) fn start(routes: HashMap<String, (u16, Vec<u8>)>) -> StandIn {
            let pki = testkit::Pki::new("stand-in KDS CA");
            let leaf = pki.server("kds", &["127.0.0.1"]);
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.to_vec()));
            let config = Arc::new(
                ServerConfig::builder_with_provider(crate::http::provider())
                    .with_safe_default_protocol_versions()
                    .and_then(|b| {
                        b.with_no_client_auth()
                            .with_single_cert(vec![CertificateDer::from(leaf.der.clone())], key)
                    })
                    .unwrap_or_else(|e| panic!("server config: {e}")),
            );
            let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
            let port = listener
                .local_addr()
                .unwrap_or_else(|e| panic!("addr: {e}"))
                .port();
            let asked = Arc::new(Mutex::new(Vec::new()));
            let log = Arc::clone(&asked);
            std::thread::spawn(move || {
                for tcp in listener.incoming().flatten() {
                    let Ok(conn) = ServerConnection::new(Arc::clone(&config)) else {
                        continue;
                    };
                    let mut s = StreamOwned::new(conn, tcp);
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).is_ok_and(|n| n == 1) {
                        head.push(byte[0]);
                    }
                    let text = String::from_utf8_lossy(&head);
                    let path = text.split(' ').nth(1).unwrap_or_default().to_owned();
                    let (status, body) = routes.get(&path).cloned().unwrap_or((404, Vec::new()));
                    if let Ok(mut l) = log.lock() {
                        l.push(path);
                    }
                    let _ = s.write_all(
                        format!(
                            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    );
                    let _ = s.write_all(&body);
                    let _ = s.flush();
                    s.conn.send_close_notify();
                    let _ = s.flush();
                }
            });
            StandIn {
                url: format!("https://127.0.0.1:{port}"),
                ca: vec![CertificateDer::from(pki.ca().der.clone())],
                asked,
            }
        }

        /// The paths asked so far.
        pub(crate) fn asked(&self) -> Vec<String> {
            self.asked.lock().map(|l| l.clone()).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_kds_layout() {
        let mut chip = [0u8; 64];
        for (i, b) in chip.iter_mut().enumerate() {
            *b = i as u8;
        }
        let tcb = TcbVersion {
            fmc: 1,
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
        };
        assert_eq!(
            vcek_path(Generation::Milan, &chip, &tcb),
            format!(
                "/vcek/v1/Milan/{}?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115",
                hex::encode(chip)
            )
        );
        assert!(vcek_path(Generation::Genoa, &chip, &tcb).starts_with("/vcek/v1/Genoa/0001"));
        assert_eq!(
            vcek_path(Generation::Turin, &chip, &tcb),
            "/vcek/v1/Turin/0001020304050607?fmcSPL=01&blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115"
        );
        assert_eq!(
            cert_chain_path(Generation::Genoa),
            "/vcek/v1/Genoa/cert_chain"
        );
    }
}
