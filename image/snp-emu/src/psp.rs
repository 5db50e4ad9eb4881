//! The emulated PSP: guest-request handling (MSG_REPORT_REQ, MSG_KEY_REQ), VMPCK handout and the
//! certificate table. Sans-IO: requests in as bytes, replies out as bytes.
//!
//! The envelope and payload types are the `attest` crate's (`attest::snp::guest_msg`); the PSP
//! side of the sequence-number rules is its `FirmwareMessenger`. Payloads (AMD #56860 §7):
//!
//! ```text
//! MSG_REPORT_REQ (0x60): 0x00 REPORT_DATA[64] | 0x40 VMPL u32 | 0x44 KEY_SEL u32 (bits 1:0) | 0x48 reserved[24]
//! MSG_REPORT_RSP (0x4C0): 0x00 STATUS u32 | 0x04 REPORT_SIZE u32 | 0x08 reserved[24] | 0x20 REPORT[0x4A0]
//! MSG_KEY_REQ (0x20): 0x00 ROOT_KEY_SELECT bit 0, KEY_SEL bits 2:1 | 0x04 reserved u32
//!                     0x08 GUEST_FIELD_SELECT u64 | 0x10 VMPL u32 | 0x14 GUEST_SVN u32 | 0x18 TCB_VERSION u64
//! MSG_KEY_RSP (0x40): 0x00 STATUS u32 | 0x04 reserved[28] | 0x20 DERIVED_KEY[32]
//! ```

use core::fmt;

use attest::{
    ratls::guid,
    snp::{
        guest_msg::{
            FirmwareMessenger, GuestMsgError, KeyReq, KeyRsp, MsgType, ReportReq, ReportRsp,
            STATUS_INVALID_KEY_SELECTION, STATUS_INVALID_PARAM, Vmpck, field_select,
        },
        report::{AttestationReport, Signature},
    },
};
use hkdf::Hkdf;
use p384::ecdsa::{Signature as EcdsaSignature, signature::hazmat::PrehashSigner};
use sha2::{Digest, Sha256, Sha384};
use zerocopy::IntoBytes;
use zeroize::Zeroizing;

use crate::chain::{Chain, Tcb};

pub use attest::snp::guest_msg::PAGE_SIZE;
pub use attest::snp::report::REPORT_SIZE;

/// Policy bit 17 is reserved and must be one (56860 "Guest Policy").
pub const POLICY_RESERVED_ONE: u64 = 1 << 17;

/// Everything a report says about the launched guest that is fixed at launch.
#[derive(Clone, Debug)]
pub struct LaunchInfo {
    /// The launch digest (MEASUREMENT).
    pub measurement: [u8; 48],
    /// Guest policy (POLICY).
    pub policy: u64,
    /// HOST_DATA.
    pub host_data: [u8; 32],
    /// Report format version to emit: 2 or 3.
    pub report_version: u32,
    /// PLATFORM_INFO.
    pub platform_info: u64,
    /// REPORT_ID (random per guest).
    pub report_id: [u8; 32],
}

/// Why the emulator refuses a launch configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaunchError {
    /// Policy bit 17 is clear (the firmware rejects such a SNP_LAUNCH_START).
    PolicyReserved,
    /// Only report versions 2 and 3 are emitted.
    ReportVersion(u32),
}

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchError::PolicyReserved => {
                f.write_str("guest policy bit 17 (reserved, must be one) is clear")
            }
            LaunchError::ReportVersion(v) => {
                write!(f, "report version {v} is not emitted (2 or 3)")
            }
        }
    }
}

impl core::error::Error for LaunchError {}

/// A guest request that produced no encrypted response (the firmware returns an error to the
/// hypervisor, which the guest sees as a failed request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The request is not exactly one page.
    PageSize(usize),
    /// MSG_VMPCK names a key the emulator does not hand out (only VMPCK0 exists).
    UnknownVmpck(u8),
    /// MSG_TYPE is not MSG_REPORT_REQ or MSG_KEY_REQ.
    MsgType(u8),
    /// The envelope is malformed, or its sequence number or tag is wrong.
    Msg(GuestMsgError),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::PageSize(n) => write!(f, "request is {n} bytes, not one page"),
            RequestError::UnknownVmpck(id) => write!(f, "VMPCK{id} is not available"),
            RequestError::MsgType(t) => write!(f, "message type {t} is not handled"),
            RequestError::Msg(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for RequestError {}

/// The emulated PSP for one guest (one emulator lifetime = one VM boot).
pub struct Psp {
    chain: Chain,
    launch: LaunchInfo,
    root_secret: Zeroizing<[u8; 32]>,
    vmpck0: Zeroizing<[u8; 32]>,
    vmpck_handed_out: bool,
    firmware: FirmwareMessenger,
    /// COMMITTED_TCB and LAUNCH_TCB of the reports (the chain's TCB unless set otherwise).
    committed_tcb: Tcb,
    launch_tcb: Tcb,
}

impl fmt::Debug for Psp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Psp")
            .field("measurement", &hex::encode(self.launch.measurement))
            .field("vmpck_handed_out", &self.vmpck_handed_out)
            .field("seqno", &self.firmware.seqno())
            .finish_non_exhaustive()
    }
}

/// Component-wise `a <= b` for TCB versions.
fn tcb_le(a: Tcb, b: Tcb) -> bool {
    a.bootloader <= b.bootloader && a.tee <= b.tee && a.snp <= b.snp && a.microcode <= b.microcode
}

impl Psp {
    /// A PSP for a guest launched with `launch`. `vmpck0` and `launch.report_id` come from the
    /// caller's randomness; `root_secret` is the chip secret keys are derived from.
    pub fn new(
        chain: Chain,
        launch: LaunchInfo,
        root_secret: Zeroizing<[u8; 32]>,
        vmpck0: Zeroizing<[u8; 32]>,
    ) -> Result<Psp, LaunchError> {
        if launch.policy & POLICY_RESERVED_ONE == 0 {
            return Err(LaunchError::PolicyReserved);
        }
        if !(2..=3).contains(&launch.report_version) {
            return Err(LaunchError::ReportVersion(launch.report_version));
        }
        let firmware = FirmwareMessenger::new(Vmpck::new(*vmpck0), 0);
        let tcb = chain.tcb;
        Ok(Psp {
            committed_tcb: tcb,
            launch_tcb: tcb,
            chain,
            launch,
            root_secret,
            vmpck0,
            vmpck_handed_out: false,
            firmware,
        })
    }

    /// The chain the reports are signed with.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// Report `committed` as COMMITTED_TCB and `launch` as LAUNCH_TCB (56860 Table 23), e.g. a
    /// platform whose firmware was updated after the guest launched (launch below reported) or
    /// whose update is not committed yet (committed below reported, so the host can roll back).
    /// REPORTED_TCB is the chain's (reissue the VCEK with `chain::TestCa::with_tcb` to lower it).
    pub fn set_tcbs(&mut self, committed: Tcb, launch: Tcb) {
        self.committed_tcb = committed;
        self.launch_tcb = launch;
    }

    /// The launch information.
    pub fn launch(&self) -> &LaunchInfo {
        &self.launch
    }

    /// Hands out VMPCK0 the first time only (it stands for the secrets page the guest reads once).
    pub fn take_vmpck(&mut self) -> Option<Zeroizing<[u8; 32]>> {
        if self.vmpck_handed_out {
            return None;
        }
        self.vmpck_handed_out = true;
        Some(self.vmpck0.clone())
    }

    /// Handles one SNP_GUEST_REQUEST: a 4 KiB request page in, a 4 KiB response page out.
    /// A failing request leaves the sequence number where it was, like the firmware.
    pub fn guest_request(&mut self, page: &[u8]) -> Result<Box<[u8; PAGE_SIZE]>, RequestError> {
        if page.len() != PAGE_SIZE {
            return Err(RequestError::PageSize(page.len()));
        }
        // Screen the clear header first so that unsupported requests never move the counter.
        let (msg_type, vmpck_id) = (page[0x34], page[0x3C]);
        if vmpck_id != 0 {
            return Err(RequestError::UnknownVmpck(vmpck_id));
        }
        let msg_type = match MsgType::from_u8(msg_type) {
            t @ (MsgType::ReportReq | MsgType::KeyReq) => t,
            _ => return Err(RequestError::MsgType(msg_type)),
        };
        let opened = self
            .firmware
            .open_request(page)
            .map_err(RequestError::Msg)?;
        let rsp = match msg_type {
            MsgType::ReportReq => self.report_response(&opened.payload),
            _ => self.key_response(&opened.payload),
        };
        let sealed = self
            .firmware
            .seal_response(&rsp)
            .map_err(RequestError::Msg)?;
        let mut out = Box::new([0u8; PAGE_SIZE]);
        let dst = out
            .get_mut(..sealed.len())
            .ok_or(RequestError::PageSize(sealed.len()))?;
        dst.copy_from_slice(&sealed);
        Ok(out)
    }

    fn report_response(&self, req: &[u8]) -> Vec<u8> {
        let rsp = match ReportReq::parse(req) {
            Err(_) => ReportRsp::error(STATUS_INVALID_PARAM),
            Ok(req) if req.vmpl.get() > 3 => ReportRsp::error(STATUS_INVALID_PARAM),
            // KEY_SEL 2 = VLEK: no VLEK is installed.
            Ok(req) if req.key_sel.get() == 2 => ReportRsp::error(STATUS_INVALID_KEY_SELECTION),
            Ok(req) => match self.report(&req.report_data, req.vmpl.get()) {
                Some(report) => ReportRsp::success(report),
                None => ReportRsp::error(STATUS_INVALID_PARAM),
            },
        };
        rsp.as_bytes().to_vec()
    }

    /// Builds and signs an attestation report (56860 Table 23). `None` only if signing fails.
    pub fn report(&self, report_data: &[u8; 64], vmpl: u32) -> Option<AttestationReport> {
        let l = &self.launch;
        let tcb = self.chain.tcb.to_u64();
        let mut r = AttestationReport::zeroed();
        r.version = l.report_version.into();
        r.guest_svn = 0.into(); // no ID block
        r.policy = l.policy.into();
        // FAMILY_ID, IMAGE_ID, ID_KEY_DIGEST, AUTHOR_KEY_DIGEST: zero without an ID block.
        r.vmpl = vmpl.into();
        r.signature_algo = 1.into(); // ECDSA P-384 with SHA-384
        r.current_tcb = tcb.into();
        r.platform_info = l.platform_info.into();
        r.flags = 0.into(); // signed by the VCEK, no author key, chip id not masked
        r.report_data = *report_data;
        r.measurement = l.measurement;
        r.host_data = l.host_data;
        r.report_id = l.report_id;
        r.report_id_ma = [0xFF; 32]; // no migration agent
        r.reported_tcb = tcb.into();
        if l.report_version >= 3 {
            // CPUID family/model/stepping of Milan B0.
            (r.cpuid_fam_id, r.cpuid_mod_id, r.cpuid_step) = (0x19, 0x01, 0x01);
        }
        r.chip_id = self.chain.chip_id;
        r.committed_tcb = self.committed_tcb.to_u64().into();
        r.current_version = [0x0F, 0x37, 0x01, 0]; // firmware 1.55 build 15
        r.committed_version = r.current_version;
        r.launch_tcb = self.launch_tcb.to_u64().into();
        let digest = Sha384::digest(r.signed_bytes());
        let sig: EcdsaSignature = self.chain.vcek_key().sign_prehash(&digest).ok()?;
        let (rb, sb) = sig.split_bytes();
        let (rb, sb): (&[u8; 48], &[u8; 48]) = (rb.as_ref(), sb.as_ref());
        // R and S little-endian, zero-extended to 72 bytes each (56860 Table 136).
        r.signature = Signature::from_be(rb, sb);
        Some(r)
    }

    fn key_response(&self, req: &[u8]) -> Vec<u8> {
        let rsp = match KeyReq::parse(req) {
            Err(_) => KeyRsp::error(STATUS_INVALID_PARAM),
            Ok(req) => match self.derive_key(&req) {
                Ok(key) => KeyRsp::success(*key),
                Err(status) => KeyRsp::error(status),
            },
        };
        Zeroizing::new(rsp.as_bytes().to_vec()).to_vec()
    }

    /// MSG_KEY_REQ: a key from the chip secret, the VMPL, the selected guest fields and the
    /// requested SVN/TCB; `Err(status)` for invalid parameters.
    fn derive_key(&self, req: &KeyReq) -> Result<Zeroizing<[u8; 32]>, u32> {
        let sel = req.root_key_select.get();
        let gfs = req.guest_field_select.get();
        let vmpl = req.vmpl.get();
        let svn = req.guest_svn.get();
        let tcb = req.tcb_version.get();
        if vmpl > 3 {
            return Err(STATUS_INVALID_PARAM);
        }
        if sel & 1 == 1 || (sel >> 1) & 3 >= 2 {
            // No VMRK (no migration agent) and no VLEK are installed.
            return Err(STATUS_INVALID_KEY_SELECTION);
        }
        // The guest may ask for keys of an older SVN or TCB, never a newer one.
        if svn > 0 || !tcb_le(Tcb::from_u64(tcb), self.chain.tcb) {
            return Err(STATUS_INVALID_PARAM);
        }
        let mut info = Vec::with_capacity(160);
        info.extend_from_slice(b"snp-emu MSG_KEY_REQ v1\0");
        info.extend_from_slice(&vmpl.to_le_bytes());
        info.extend_from_slice(&gfs.to_le_bytes());
        let l = &self.launch;
        if gfs & field_select::GUEST_POLICY != 0 {
            info.extend_from_slice(&l.policy.to_le_bytes());
        }
        if gfs & field_select::IMAGE_ID != 0 {
            info.extend_from_slice(&[0u8; 16]);
        }
        if gfs & field_select::FAMILY_ID != 0 {
            info.extend_from_slice(&[0u8; 16]);
        }
        if gfs & field_select::MEASUREMENT != 0 {
            info.extend_from_slice(&l.measurement);
        }
        if gfs & field_select::GUEST_SVN != 0 {
            info.extend_from_slice(&svn.to_le_bytes());
        }
        if gfs & field_select::TCB_VERSION != 0 {
            info.extend_from_slice(&tcb.to_le_bytes());
        }
        let mut key = Zeroizing::new([0u8; 32]);
        let hk = Hkdf::<Sha256>::new(
            Some(b"snp-emu VCEK-rooted derived key"),
            self.root_secret.as_slice(),
        );
        hk.expand(&info, key.as_mut_slice())
            .map_err(|_| STATUS_INVALID_PARAM)?;
        Ok(key)
    }

    /// The certificate table of the extended guest request (GHCB spec #56421, "SNP Extended Guest
    /// Request"): entries `{GUID[16], offset u32, length u32}` ended by an all-zero entry, then the
    /// DER certificates; offsets count from the table start.
    pub fn cert_table(&self) -> Vec<u8> {
        let certs: [(&[u8; 16], &[u8]); 3] = [
            (&guid::VCEK, &self.chain.vcek_der),
            (&guid::ASK, &self.chain.ask_der),
            (&guid::ARK, &self.chain.ark_der),
        ];
        let mut offset = 24 * (certs.len() + 1);
        let mut table = Vec::new();
        for (g, der) in certs {
            table.extend_from_slice(g);
            table.extend_from_slice(&u32::try_from(offset).unwrap_or(u32::MAX).to_le_bytes());
            table.extend_from_slice(&u32::try_from(der.len()).unwrap_or(u32::MAX).to_le_bytes());
            offset += der.len();
        }
        table.extend_from_slice(&[0u8; 24]);
        for (_, der) in certs {
            table.extend_from_slice(der);
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attest::snp::guest_msg::{self, GuestMessenger, seal};
    use attest::snp::report::SIGNED_LEN;
    use p384::ecdsa::{VerifyingKey, signature::hazmat::PrehashVerifier};

    const KEY: [u8; 32] = [0x42; 32];

    fn psp_with(measurement: [u8; 48]) -> Psp {
        let chain = Chain::builtin().unwrap();
        let root = chain.derive_root_secret();
        let launch = LaunchInfo {
            measurement,
            policy: 0x30000,
            host_data: [0; 32],
            report_version: 3,
            platform_info: 1,
            report_id: [0x11; 32],
        };
        Psp::new(chain, launch, root, Zeroizing::new(KEY)).unwrap()
    }

    fn verify(vk: &VerifyingKey, report: &AttestationReport) -> bool {
        let rs = report.signature.to_be_rs().unwrap();
        let sig = EcdsaSignature::from_slice(&rs).unwrap();
        vk.verify_prehash(&Sha384::digest(report.signed_bytes()), &sig)
            .is_ok()
    }

    fn page(msg: Vec<u8>) -> Vec<u8> {
        let mut p = msg;
        p.resize(PAGE_SIZE, 0);
        p
    }

    #[test]
    fn report_fields_and_signature() {
        let psp = psp_with([0xAA; 48]);
        let rd = [0x5A; 64];
        let r = psp.report(&rd, 1).unwrap();
        // Round trip through attest's parser (version, algorithm, reserved fields).
        let bytes = r.to_bytes();
        let parsed = AttestationReport::parse(&bytes).unwrap();
        assert_eq!(parsed.version.get(), 3);
        assert_eq!(parsed.policy.get(), 0x30000);
        assert_eq!(parsed.vmpl.get(), 1);
        assert_eq!(parsed.report_data, rd);
        assert_eq!(parsed.measurement, [0xAA; 48]);
        assert_eq!(parsed.chip_id, psp.chain().chip_id);
        assert_eq!(&bytes[0x180..0x188], &Tcb::TEST.to_u64().to_le_bytes());
        assert_eq!(&bytes[0x1A0..0x1E0], &psp.chain().chip_id);
        // Little-endian r and s, each zero-padded from 48 to 72 bytes.
        assert!(
            bytes[SIGNED_LEN + 48..SIGNED_LEN + 72]
                .iter()
                .all(|b| *b == 0)
        );
        assert!(bytes[SIGNED_LEN + 144..].iter().all(|b| *b == 0));
        let vk = *psp.chain().vcek_public();
        assert!(verify(&vk, &parsed));
        let mut bad = bytes;
        bad[0x55] ^= 1;
        assert!(!verify(&vk, &AttestationReport::parse(&bad).unwrap()));
        // Version 2 leaves the CPUID bytes zero (attest rejects them otherwise).
        let mut psp2 = psp_with([0; 48]);
        psp2.launch.report_version = 2;
        AttestationReport::parse(&psp2.report(&rd, 0).unwrap().to_bytes()).unwrap();
    }

    #[test]
    fn guest_messenger_talks_to_psp() {
        let mut psp = psp_with([1; 48]);
        assert!(psp.take_vmpck().is_some());
        assert!(psp.take_vmpck().is_none());
        let mut guest = GuestMessenger::new(Vmpck::new(KEY), 0);
        let req = guest.report_request([3; 64], 0).unwrap();
        let rsp = psp.guest_request(&page(req)).unwrap();
        let report = guest.report_response(&rsp[..]).unwrap();
        assert_eq!(report.report_data, [3; 64]);
        let req = guest
            .key_request(&KeyReq::new(field_select::MEASUREMENT, 0))
            .unwrap();
        let rsp = psp.guest_request(&page(req)).unwrap();
        let k1 = guest.key_response(&rsp[..]).unwrap();
        let req = guest
            .key_request(&KeyReq::new(field_select::MEASUREMENT, 0))
            .unwrap();
        let rsp = psp.guest_request(&page(req)).unwrap();
        assert_eq!(
            k1.0,
            guest.key_response(&rsp[..]).unwrap().0,
            "same inputs, same key"
        );
        assert_eq!(guest.seqno(), 6);
    }

    #[test]
    fn seqno_rules() {
        let mut psp = psp_with([1; 48]);
        let body = ReportReq::new([3; 64], 0);
        let req = |seq: u64, key: [u8; 32], vmpck: u8, t: MsgType| {
            page(seal(&Vmpck::new(key), vmpck, seq, t, 1, body.as_bytes()).unwrap())
        };
        // The first request must use seqno 1.
        assert!(matches!(
            psp.guest_request(&req(2, KEY, 0, MsgType::ReportReq)),
            Err(RequestError::Msg(GuestMsgError::SeqnoMismatch {
                expected: 1,
                got: 2
            }))
        ));
        let rsp = psp
            .guest_request(&req(1, KEY, 0, MsgType::ReportReq))
            .unwrap();
        assert_eq!(
            guest_msg::open(&Vmpck::new(KEY), &rsp[..]).unwrap().seqno,
            2
        );
        // Replay of 1 fails; a wrong key fails and does not move the counter; 3 then works.
        assert!(matches!(
            psp.guest_request(&req(1, KEY, 0, MsgType::ReportReq)),
            Err(RequestError::Msg(GuestMsgError::SeqnoMismatch {
                got: 1,
                ..
            }))
        ));
        assert_eq!(
            psp.guest_request(&req(3, [9; 32], 0, MsgType::ReportReq)),
            Err(RequestError::Msg(GuestMsgError::AuthFailed))
        );
        assert_eq!(
            psp.guest_request(&req(3, KEY, 1, MsgType::ReportReq)),
            Err(RequestError::UnknownVmpck(1))
        );
        assert_eq!(
            psp.guest_request(&req(3, KEY, 0, MsgType::CpuidReq)),
            Err(RequestError::MsgType(1))
        );
        assert_eq!(
            psp.guest_request(&[0u8; 100]),
            Err(RequestError::PageSize(100))
        );
        assert!(
            psp.guest_request(&req(3, KEY, 0, MsgType::ReportReq))
                .is_ok()
        );
    }

    fn status(psp: &mut Psp, guest: &mut GuestMessenger, t: MsgType, body: &[u8]) -> u32 {
        let req = guest.request(t, 1, body).unwrap();
        let rsp = psp.guest_request(&page(req)).unwrap();
        let o = guest.response(&rsp[..]).unwrap();
        u32::from_le_bytes(o.payload[..4].try_into().unwrap())
    }

    #[test]
    fn invalid_parameters_are_encrypted_statuses() {
        let mut psp = psp_with([1; 48]);
        let mut g = GuestMessenger::new(Vmpck::new(KEY), 0);
        let vmpl4 = ReportReq::new([0; 64], 4);
        assert_eq!(
            status(&mut psp, &mut g, MsgType::ReportReq, vmpl4.as_bytes()),
            STATUS_INVALID_PARAM
        );
        assert_eq!(
            status(&mut psp, &mut g, MsgType::ReportReq, &[0u8; 0x20]),
            STATUS_INVALID_PARAM
        );
        let mut vlek = ReportReq::new([0; 64], 0);
        vlek.key_sel = 2.into();
        assert_eq!(
            status(&mut psp, &mut g, MsgType::ReportReq, vlek.as_bytes()),
            STATUS_INVALID_KEY_SELECTION
        );
        let mut vmrk = KeyReq::new(0, 0);
        vmrk.root_key_select = 1.into();
        assert_eq!(
            status(&mut psp, &mut g, MsgType::KeyReq, vmrk.as_bytes()),
            STATUS_INVALID_KEY_SELECTION
        );
        let mut newer_tcb = KeyReq::new(field_select::TCB_VERSION, 0);
        newer_tcb.tcb_version = (Tcb::TEST.to_u64() + (1 << 56)).into();
        assert_eq!(
            status(&mut psp, &mut g, MsgType::KeyReq, newer_tcb.as_bytes()),
            STATUS_INVALID_PARAM
        );
        let mut older_tcb = KeyReq::new(field_select::TCB_VERSION, 0);
        older_tcb.tcb_version = (Tcb::TEST.to_u64() - 1).into();
        assert_eq!(
            status(&mut psp, &mut g, MsgType::KeyReq, older_tcb.as_bytes()),
            0
        );
    }

    #[test]
    fn derived_key_depends_on_measurement_only_when_selected() {
        let key = |m: [u8; 48], req: &KeyReq| *psp_with(m).derive_key(req).unwrap();
        let with_m = KeyReq::new(field_select::MEASUREMENT, 0);
        let without = KeyReq::new(field_select::GUEST_POLICY, 0);
        assert_eq!(key([1; 48], &with_m), key([1; 48], &with_m));
        assert_ne!(key([1; 48], &with_m), key([2; 48], &with_m));
        assert_eq!(key([1; 48], &without), key([2; 48], &without));
        assert_ne!(key([1; 48], &with_m), key([1; 48], &without));
        assert_ne!(
            key([1; 48], &with_m),
            key([1; 48], &KeyReq::new(field_select::MEASUREMENT, 1))
        );
    }

    #[test]
    fn cert_table_layout() {
        let psp = psp_with([0; 48]);
        let t = psp.cert_table();
        assert_eq!(&t[..16], &guid::VCEK);
        let off = u32::from_le_bytes(t[16..20].try_into().unwrap()) as usize;
        let len = u32::from_le_bytes(t[20..24].try_into().unwrap()) as usize;
        assert_eq!(off, 96);
        assert_eq!(&t[off..off + len], &psp.chain().vcek_der[..]);
        assert_eq!(&t[72..96], &[0u8; 24]);
        assert_eq!(&t[48..64], &guid::ARK);
    }

    #[test]
    fn launch_checks() {
        let chain = Chain::builtin().unwrap();
        let root = chain.derive_root_secret();
        let launch = LaunchInfo {
            measurement: [0; 48],
            policy: 0,
            host_data: [0; 32],
            report_version: 3,
            platform_info: 1,
            report_id: [0; 32],
        };
        assert_eq!(
            Psp::new(chain, launch, root, Zeroizing::new([0; 32])).unwrap_err(),
            LaunchError::PolicyReserved
        );
    }
}
