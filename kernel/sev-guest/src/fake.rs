//! A fake SNP hypervisor for the host tests: an RMP-like page-state map, memory whose pages
//! are scrambled on every conversion, devices behind IOIO/MSR/MMIO, error injection, and
//! guest requests answered by `snp-emu`'s firmware side (`snp_emu::psp::Psp`).

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use snp_emu::chain::Chain;
use snp_emu::psp::{LaunchInfo, Psp};
use zeroize::Zeroizing;

use crate::ghcb::{Ghcb, GhcbField, SHARED_BUFFER_OFFSET};
use crate::msr::{self, HvFeatures, PageOp, SevInfo};
use crate::nae::{IoioInfo, MalformedReason, exit_code};
use crate::psc::{self, PSC_MAX_ENTRIES, PscEntry, PscHeader};
use crate::{PageSize, PvalidateError, SharedAccessError, Vmgexit};

/// GHCB page of the fake guest.
pub const GHCB_GPA: u64 = 0x10_0000;
/// First GFN of the guest RAM the fake knows.
pub const RAM_FIRST_GFN: u64 = 0x100;
/// Pages of guest RAM.
pub const RAM_PAGES: u64 = 0x400;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rmp {
    /// Assigned to the guest (private).
    assigned: bool,
    /// Validated by the guest.
    validated: bool,
}

/// Errors and misbehaviour to inject (each is consumed or counts down).
#[derive(Default, Debug)]
pub struct Inject {
    pub sev_info: Option<u64>,
    pub features: Option<u64>,
    pub register_reply: Option<u64>,
    pub msr_psc_error: Option<u32>,
    pub pvalidate: Option<PvalidateError>,
    pub exception: Option<u64>,
    pub malformed: Option<MalformedReason>,
    pub undefined_info1: Option<u64>,
    pub drop_outputs: bool,
    pub psc_error: Option<u64>,
    pub psc_per_call: Option<usize>,
    pub psc_stall: bool,
    pub psc_tamper_end: bool,
    pub busy: u32,
    pub fw_error: Option<u32>,
    pub vmm_error: Option<u32>,
    pub invalid_len_plain: bool,
    pub corrupt_response: bool,
}

pub struct FakeHv {
    registered: Option<u64>,
    rmp: BTreeMap<u64, Rmp>,
    mem: BTreeMap<u64, Box<[u8; 4096]>>,
    rng: u64,
    pub ports: BTreeMap<u16, u32>,
    pub port_writes: Vec<(u16, u32)>,
    pub msrs: BTreeMap<u32, u64>,
    pub mmio: BTreeMap<u64, [u8; 8]>,
    /// Every MMIO exit as received: (exit code, `SW_EXITINFO1`, `SW_EXITINFO2`, `SW_SCRATCH`).
    pub mmio_exits: Vec<(u64, u64, u64, Option<u64>)>,
    pub psp: Psp,
    pub inject: Inject,
    pub terminated: Option<(u8, u8)>,
    pub exits: Vec<u64>,
    /// Request pages forwarded to the PSP.
    pub forwarded: Vec<Vec<u8>>,
    /// Every request page the hypervisor received (BUSY ones too).
    pub received: Vec<Vec<u8>>,
    /// Guest mistakes the fake detected (a validated page made shared, ...).
    pub violations: Vec<&'static str>,
}

pub fn psp() -> Psp {
    let chain = Chain::builtin().unwrap();
    let root = chain.derive_root_secret();
    let launch = LaunchInfo {
        measurement: [0x4D; 48],
        policy: 0x30000,
        host_data: [0; 32],
        report_version: 3,
        platform_info: 1,
        report_id: [0x11; 32],
    };
    Psp::new(chain, launch, root, Zeroizing::new([0x42; 32])).unwrap()
}

impl FakeHv {
    pub fn new() -> Self {
        let mut rmp = BTreeMap::new();
        for gfn in RAM_FIRST_GFN..RAM_FIRST_GFN + RAM_PAGES {
            rmp.insert(
                gfn,
                Rmp {
                    assigned: true,
                    validated: true,
                },
            );
        }
        Self {
            registered: None,
            rmp,
            mem: BTreeMap::new(),
            rng: 0x9E37_79B9_7F4A_7C15,
            ports: BTreeMap::new(),
            port_writes: Vec::new(),
            msrs: BTreeMap::new(),
            mmio: BTreeMap::new(),
            mmio_exits: Vec::new(),
            psp: psp(),
            inject: Inject::default(),
            terminated: None,
            exits: Vec::new(),
            forwarded: Vec::new(),
            received: Vec::new(),
            violations: Vec::new(),
        }
    }

    pub fn is_shared_gfn(&self, gfn: u64) -> bool {
        matches!(self.rmp.get(&gfn), Some(r) if !r.assigned)
    }

    pub fn is_private_validated(&self, gfn: u64) -> bool {
        self.rmp.get(&gfn)
            == Some(&Rmp {
                assigned: true,
                validated: true,
            })
    }

    fn scramble(&mut self, gfn: u64) {
        let page = self.mem.entry(gfn).or_insert_with(|| Box::new([0; 4096]));
        for b in page.iter_mut() {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            *b = self.rng as u8;
        }
    }

    /// RMPUPDATE as the hypervisor does it for a page-state change.
    fn convert(&mut self, gfn: u64, op: PageOp) -> bool {
        let Some(r) = self.rmp.get(&gfn).copied() else {
            return false;
        };
        match op {
            PageOp::Shared => {
                if r.validated {
                    self.violations
                        .push("page made shared while still validated");
                }
                self.rmp.insert(
                    gfn,
                    Rmp {
                        assigned: false,
                        validated: false,
                    },
                );
            }
            PageOp::Private => {
                self.rmp.insert(
                    gfn,
                    Rmp {
                        assigned: true,
                        validated: false,
                    },
                );
            }
        }
        self.scramble(gfn);
        true
    }

    fn page_shared(&self, gpa: u64, len: usize) -> bool {
        let last = gpa + len.max(1) as u64 - 1;
        (gpa >> 12..=last >> 12).all(|g| self.is_shared_gfn(g))
    }

    fn read_mem(&self, gpa: u64, out: &mut [u8]) {
        for (i, b) in out.iter_mut().enumerate() {
            let a = gpa + i as u64;
            *b = self
                .mem
                .get(&(a >> 12))
                .map_or(0, |p| p[(a & 0xFFF) as usize]);
        }
    }

    fn write_mem(&mut self, gpa: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            let a = gpa + i as u64;
            let page = self
                .mem
                .entry(a >> 12)
                .or_insert_with(|| Box::new([0; 4096]));
            page[(a & 0xFFF) as usize] = *b;
        }
    }

    fn answer(&mut self, g: &mut Ghcb, info1: u64, info2: u64) {
        g.set(GhcbField::SwExitInfo1, info1);
        g.set(GhcbField::SwExitInfo2, info2);
    }

    fn malformed(&mut self, g: &mut Ghcb, r: MalformedReason) {
        self.answer(g, 2, r.to_info2());
    }

    fn psc(&mut self, g: &mut Ghcb) -> u64 {
        let hdr = PscHeader::read(g.shared_buffer());
        if usize::from(hdr.end_entry) >= PSC_MAX_ENTRIES || hdr.reserved != 0 {
            return psc::PSC_ERROR_INVALID_HEADER;
        }
        if let Some(e) = self.inject.psc_error.take() {
            return e;
        }
        let mut cur = hdr.cur_entry;
        let mut done = 0;
        if !self.inject.psc_stall {
            while cur <= hdr.end_entry {
                if self.inject.psc_per_call.is_some_and(|n| done >= n) {
                    break;
                }
                let Some(e) =
                    psc::read_entry(g.shared_buffer(), usize::from(cur)).and_then(PscEntry::decode)
                else {
                    return psc::PSC_ERROR_INVALID_ENTRY;
                };
                if e.size != PageSize::Size4K || !self.convert(e.gfn, e.op) {
                    return psc::PSC_ERROR_INVALID_ENTRY;
                }
                cur += 1;
                done += 1;
            }
        }
        let end = if self.inject.psc_tamper_end {
            hdr.end_entry + 1
        } else {
            hdr.end_entry
        };
        PscHeader {
            cur_entry: cur,
            end_entry: end,
            reserved: 0,
        }
        .write(g.shared_buffer_mut());
        0
    }

    fn guest_request(&mut self, g: &mut Ghcb, req: &Ghcb, ext: bool) -> u64 {
        let (Some(req_gpa), Some(rsp_gpa)) = (
            req.get(GhcbField::SwExitInfo1),
            req.get(GhcbField::SwExitInfo2),
        ) else {
            return u64::MAX;
        };
        if !self.page_shared(req_gpa, 4096) || !self.page_shared(rsp_gpa, 4096) {
            self.violations.push("guest-request page not shared");
            return 0x16;
        }
        let mut page = alloc::vec![0u8; 4096];
        self.read_mem(req_gpa, &mut page);
        self.received.push(page);
        if self.inject.busy > 0 {
            self.inject.busy -= 1;
            return 2 << 32;
        }
        if let Some(v) = self.inject.vmm_error.take() {
            return u64::from(v) << 32;
        }
        if !ext && self.inject.invalid_len_plain {
            self.inject.invalid_len_plain = false;
            return 1 << 32;
        }
        let table = self.psp.cert_table();
        let needed = table.len().div_ceil(4096) as u64;
        if ext {
            let (Some(gpa), Some(pages)) = (req.get(GhcbField::Rax), req.get(GhcbField::Rbx))
            else {
                return u64::MAX;
            };
            if pages < needed {
                g.set(GhcbField::Rbx, needed);
                return 1 << 32;
            }
            if !self.page_shared(gpa, (pages * 4096) as usize) {
                self.violations.push("certificate buffer not shared");
                return 0x16;
            }
            self.write_mem(gpa, &table);
        }
        if let Some(fw) = self.inject.fw_error.take() {
            return u64::from(fw);
        }
        let mut page = alloc::vec![0u8; 4096];
        self.read_mem(req_gpa, &mut page);
        self.forwarded.push(page.clone());
        match self.psp.guest_request(&page) {
            Ok(mut rsp) => {
                if core::mem::take(&mut self.inject.corrupt_response) {
                    rsp[0x70] ^= 1;
                }
                self.write_mem(rsp_gpa, &rsp[..]);
                0
            }
            // The firmware refuses (bad sequence number, tag, ...): INVALID_PARAM.
            Err(_) => 0x16,
        }
    }
}

impl Vmgexit for FakeHv {
    fn msr_protocol(&mut self, request: u64) -> u64 {
        match (request & 0xFFF) as u16 {
            msr::info::SEV_INFO_REQ => self.inject.sev_info.take().unwrap_or(
                SevInfo {
                    max_version: 2,
                    min_version: 1,
                    cbit: 51,
                }
                .emit(),
            ),
            msr::info::HV_FEATURES_REQ => self
                .inject
                .features
                .take()
                .unwrap_or(HvFeatures(HvFeatures::SNP | HvFeatures::SNP_AP_CREATION).emit()),
            msr::info::REGISTER_GPA_REQ => {
                if let Some(r) = self.inject.register_reply.take() {
                    return r;
                }
                let gfn = request >> 12;
                if !self.is_shared_gfn(gfn) {
                    return 0xFFFF_FFFF_FFFF_F013;
                }
                self.registered = Some(gfn);
                (gfn << 12) | 0x013
            }
            msr::info::PSC_REQ => {
                if let Some(e) = self.inject.msr_psc_error.take() {
                    return msr::psc_response(e);
                }
                match msr::parse_psc_request(request) {
                    Some((gfn, op)) if self.convert(gfn, op) => msr::psc_response(0),
                    _ => msr::psc_response(0x10),
                }
            }
            msr::info::TERMINATE_REQ => {
                self.terminated = msr::parse_terminate_request(request);
                0
            }
            _ => 0,
        }
    }

    fn ghcb_gpa(&self) -> u64 {
        GHCB_GPA
    }

    fn exit(&mut self, g: &mut Ghcb) {
        let req = g.clone();
        let code = req.page().sw_exit_code.get();
        self.exits.push(code);
        // The hypervisor reads the shared GHCB page: it must be shared and registered.
        if self.registered != Some(GHCB_GPA >> 12) || !self.is_shared_gfn(GHCB_GPA >> 12) {
            return self.malformed(g, MalformedReason::NotRegistered);
        }
        g.clear_valid();
        if req.protocol_version() != 2 || req.usage() != 0 {
            return self.malformed(g, MalformedReason::InvalidUsage);
        }
        if let Some(e) = self.inject.exception.take() {
            return self.answer(g, 1, e);
        }
        if let Some(r) = self.inject.malformed.take() {
            return self.malformed(g, r);
        }
        if let Some(v) = self.inject.undefined_info1.take() {
            return self.answer(g, v, 0);
        }
        let Some(info1) = req.get(GhcbField::SwExitInfo1) else {
            return self.malformed(g, MalformedReason::MissingInput);
        };
        let scratch_ok =
            req.get(GhcbField::SwScratch) == Some(GHCB_GPA + SHARED_BUFFER_OFFSET as u64);
        let info2 = match code {
            exit_code::IOIO => {
                let Ok(io) = IoioInfo::decode(info1) else {
                    return self.malformed(g, MalformedReason::InvalidInput);
                };
                let Some(rax) = req.get(GhcbField::Rax) else {
                    return self.malformed(g, MalformedReason::MissingInput);
                };
                if io.is_in {
                    let v = self.ports.get(&io.port).copied().unwrap_or(0xFFFF_FFFF);
                    if !self.inject.drop_outputs {
                        g.set(GhcbField::Rax, u64::from(v) & io.size.mask());
                    }
                } else {
                    self.port_writes
                        .push((io.port, (rax & io.size.mask()) as u32));
                }
                0
            }
            exit_code::MSR => {
                let Some(rcx) = req.get(GhcbField::Rcx) else {
                    return self.malformed(g, MalformedReason::MissingInput);
                };
                if info1 == 0 {
                    let v = self.msrs.get(&(rcx as u32)).copied().unwrap_or(0);
                    if !self.inject.drop_outputs {
                        g.set(GhcbField::Rax, v & 0xFFFF_FFFF);
                        g.set(GhcbField::Rdx, v >> 32);
                    }
                } else {
                    let (Some(a), Some(d)) = (req.get(GhcbField::Rax), req.get(GhcbField::Rdx))
                    else {
                        return self.malformed(g, MalformedReason::MissingInput);
                    };
                    self.msrs.insert(rcx as u32, (a & 0xFFFF_FFFF) | (d << 32));
                }
                0
            }
            exit_code::MMIO_READ | exit_code::MMIO_WRITE => {
                let len = req.page().sw_exit_info_2.get();
                self.mmio_exits
                    .push((code, info1, len, req.get(GhcbField::SwScratch)));
                if !scratch_ok {
                    return self.malformed(g, MalformedReason::InvalidScratchArea);
                }
                if !matches!(len, 1 | 2 | 4 | 8) {
                    return self.malformed(g, MalformedReason::InvalidInput);
                }
                let len = len as usize;
                if code == exit_code::MMIO_READ {
                    let v = self.mmio.get(&info1).copied().unwrap_or([0xFF; 8]);
                    g.shared_buffer_mut()[..len].copy_from_slice(&v[..len]);
                } else {
                    let mut v = [0u8; 8];
                    v[..len].copy_from_slice(&req.shared_buffer()[..len]);
                    self.mmio.insert(info1, v);
                }
                0
            }
            exit_code::PSC => {
                if !scratch_ok {
                    return self.malformed(g, MalformedReason::InvalidScratchArea);
                }
                self.psc(g)
            }
            exit_code::GUEST_REQUEST => self.guest_request(g, &req, false),
            exit_code::EXT_GUEST_REQUEST => self.guest_request(g, &req, true),
            _ => return self.malformed(g, MalformedReason::InvalidInput),
        };
        self.answer(g, 0, info2);
    }

    fn pvalidate(
        &mut self,
        gpa: u64,
        size: PageSize,
        validate: bool,
    ) -> Result<(), PvalidateError> {
        if let Some(e) = self.inject.pvalidate.take() {
            return Err(e);
        }
        if size != PageSize::Size4K || !gpa.is_multiple_of(4096) {
            return Err(PvalidateError::FailInput);
        }
        let Some(r) = self.rmp.get_mut(&(gpa >> 12)) else {
            return Err(PvalidateError::FailInput);
        };
        if !r.assigned {
            return Err(PvalidateError::FailInput);
        }
        if r.validated == validate {
            return Err(PvalidateError::NoUpdate);
        }
        r.validated = validate;
        Ok(())
    }

    fn read_shared(&mut self, gpa: u64, out: &mut [u8]) -> Result<(), SharedAccessError> {
        if !self.page_shared(gpa, out.len()) {
            return Err(SharedAccessError::NotShared { gpa });
        }
        self.read_mem(gpa, out);
        Ok(())
    }

    fn write_shared(&mut self, gpa: u64, data: &[u8]) -> Result<(), SharedAccessError> {
        if !self.page_shared(gpa, data.len()) {
            return Err(SharedAccessError::NotShared { gpa });
        }
        self.write_mem(gpa, data);
        Ok(())
    }
}
