//! Platform and database backends of the host: `snp-emu` over its unix socket ([`EmulatedEvidence`]), no
//! platform ([`NoEvidence`]), and the Redis-with-Findex store behind the `/redis-findex` check
//! ([`RedisOpener`], [`OpenerProbe`]).

use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use crate::store::HostStore;
use kms::bootstrap::DbSecret;
use kms::bootstrap::platform::{
    CertTableEntry, DatabaseProbe, Evidence, EvidenceError, Platform, ProbeError, parse_cert_table,
};
use zeroize::Zeroizing;

/// MSG_KEY_REQ GUEST_FIELD_SELECT (SEV-SNP ABI spec 56860, Table 18): guest policy and launch measurement, so
/// the derived key changes when the image or its policy changes.
const KEY_FIELDS: u64 = attest::snp::guest_msg::field_select::GUEST_POLICY
    | attest::snp::guest_msg::field_select::MEASUREMENT;

/// `snp-emu` over its unix socket, speaking real SNP guest messages with VMPCK0.
pub struct EmulatedEvidence {
    client: snp_emu_proto::client::Client<UnixStream>,
}

impl EmulatedEvidence {
    /// Connects and fetches VMPCK0 (the emulator hands it out once per lifetime, as the secrets page would).
    pub fn connect(path: &std::path::Path) -> Result<Self, String> {
        let stream = UnixStream::connect(path).map_err(|e| format!("{}: {e}", path.display()))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let mut client = snp_emu_proto::client::Client::new(stream);
        client.get_vmpck().map_err(|e| format!("GET_VMPCK: {e}"))?;
        Ok(EmulatedEvidence { client })
    }
}

fn client_error(e: snp_emu_proto::client::ClientError) -> EvidenceError {
    use snp_emu_proto::client::ClientError as C;
    match e {
        C::Io(_) | C::Closed => EvidenceError::Transport("snp-emu socket"),
        C::Status(s) => EvidenceError::Firmware(u32::from(s)),
        C::BadReply(w) => EvidenceError::Malformed(w),
        C::Frame(_) => EvidenceError::Transport("request too large for snp-emu"),
        C::Msg(_) => {
            EvidenceError::Malformed("guest message failed (VMPCK wiped or firmware error)")
        }
        C::NoVmpck => EvidenceError::Transport("no VMPCK (wiped after a failed guest request)"),
    }
}

impl Evidence for EmulatedEvidence {
    fn platform(&self) -> Platform {
        Platform::SevSnp
    }

    fn report(&mut self, report_data: &[u8; 64]) -> Result<Vec<u8>, EvidenceError> {
        self.client
            .report(report_data, 0)
            .map(|r| r.to_bytes().to_vec())
            .map_err(client_error)
    }

    fn cert_table(&mut self) -> Result<Vec<CertTableEntry>, EvidenceError> {
        let table = self.client.certs().map_err(client_error)?;
        parse_cert_table(&table)
    }

    fn derived_key(&mut self) -> Result<Option<Zeroizing<[u8; 32]>>, EvidenceError> {
        let req = attest::snp::guest_msg::KeyReq::new(KEY_FIELDS, 0);
        let key = self.client.derived_key(&req).map_err(client_error)?;
        Ok(Some(Zeroizing::new(key.0)))
    }
}

/// No platform.
pub struct NoEvidence;

impl Evidence for NoEvidence {
    fn platform(&self) -> Platform {
        Platform::None
    }
    fn report(&mut self, _: &[u8; 64]) -> Result<Vec<u8>, EvidenceError> {
        Err(EvidenceError::Unsupported)
    }
    fn cert_table(&mut self) -> Result<Vec<CertTableEntry>, EvidenceError> {
        Ok(Vec::new())
    }
    fn derived_key(&mut self) -> Result<Option<Zeroizing<[u8; 32]>>, EvidenceError> {
        Ok(None)
    }
}

/// Opens the Redis-with-Findex store for a URL and secret; used by the probe and at `/start`.
pub trait StoreOpener: Send + Sync {
    /// Connects (and checks the secret against an existing database).
    fn open(&self, url: &str, secret: &DbSecret) -> Result<Arc<HostStore>, ProbeError>;
}

/// The real store: `kms_redis::RedisFindexStore`.
pub struct RedisOpener;

impl StoreOpener for RedisOpener {
    fn open(&self, url: &str, secret: &DbSecret) -> Result<Arc<HostStore>, ProbeError> {
        let opts = kms_redis::ConnectOptions {
            io_timeout: Duration::from_secs(10),
            ..Default::default()
        };
        match kms_redis::RedisFindexStore::connect(url, secret.expose(), opts) {
            Ok(store) => Ok(Arc::new(HostStore::RedisFindex(Box::new(store)))),
            Err(kms_redis::host::ConnectError::Url(_)) => Err(ProbeError::BadUrl),
            Err(kms_redis::host::ConnectError::Open(kms_redis::OpenError::WrongSecret)) => {
                Err(ProbeError::WrongSecret)
            }
            Err(kms_redis::host::ConnectError::Open(kms_redis::OpenError::Unavailable(_))) => {
                Err(ProbeError::Unreachable)
            }
            Err(kms_redis::host::ConnectError::Open(_)) => Err(ProbeError::Storage),
        }
    }
}

/// The [`DatabaseProbe`] of the host: open the store (connect, AUTH, secret check) and drop it.
pub struct OpenerProbe(pub Arc<dyn StoreOpener>);

impl DatabaseProbe for OpenerProbe {
    fn probe(&mut self, url: &str, secret: &DbSecret) -> Result<(), ProbeError> {
        self.0.open(url, secret).map(drop)
    }
}
