//! A fake TDX module and VMM for the tests: page states (pending, private, shared) with
//! contents scrambled on every conversion, #VE information that is valid once, MapGPA with
//! scripted partial progress, GetQuote that completes after a number of polls or fails with a
//! chosen status, accept with busy/size-mismatch/already-accepted answers, error injection.

use std::collections::{BTreeMap, BTreeSet};
use std::vec::Vec;

use crate::PAGE_SIZE;
use crate::quote::{GetQuoteStatus, HEADER_LEN, Header};
use crate::tdcall::*;
use crate::ve::VeInfo;
use crate::vmcall::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageState {
    Pending,
    Private,
    Shared,
}

pub enum MapGpaScript {
    All,
    PagesPerCall(u64),
    RetryAt(u64),
    Fail(VmcallStatus),
}

pub enum QuoteBehaviour {
    After(u32, Vec<u8>),
    Fail(GetQuoteStatus),
    Refuse(VmcallStatus),
}

pub struct FakeTdx {
    gpaw: u64,
    attributes: u64,
    ve: Option<VeInfo>,
    pub double_fault: bool,
    pages: BTreeMap<u64, (PageState, Vec<u8>)>,
    scramble: u8,
    pub mapped_4k_only: BTreeSet<u64>,
    pub port_value: u32,
    pub port_writes: Vec<(u16, u8, u32)>,
    pub io_status: VmcallStatus,
    pub msrs: BTreeMap<u32, u64>,
    pub halts: u32,
    pub last_hlt_blocked: Option<bool>,
    mmio: BTreeMap<u64, u64>,
    pub fail_next_tdcall: Option<u64>,
    pub map_gpa_script: MapGpaScript,
    pub map_gpa_calls: u32,
    pub map_gpa_starts: Vec<u64>,
    pub keep_accepted_on_private: Option<u64>,
    pub busy_accepts: u32,
    pub accepts_2m: u32,
    pub accepts_4k: u32,
    pub rtmr_extends: Vec<(u64, [u8; 48])>,
    pub quote: QuoteBehaviour,
    pub quote_calls: u32,
    pub quote_requests: Vec<Vec<u8>>,
    pending_quote: Option<(u64, u32)>,
}

impl FakeTdx {
    pub fn new(gpaw: u64, attributes: u64) -> Self {
        Self {
            gpaw,
            attributes,
            ve: None,
            double_fault: false,
            pages: BTreeMap::new(),
            scramble: 0x5A,
            mapped_4k_only: BTreeSet::new(),
            port_value: 0,
            port_writes: Vec::new(),
            io_status: VmcallStatus::Success,
            msrs: BTreeMap::new(),
            halts: 0,
            last_hlt_blocked: None,
            mmio: BTreeMap::new(),
            fail_next_tdcall: None,
            map_gpa_script: MapGpaScript::All,
            map_gpa_calls: 0,
            map_gpa_starts: Vec::new(),
            keep_accepted_on_private: None,
            busy_accepts: 0,
            accepts_2m: 0,
            accepts_4k: 0,
            rtmr_extends: Vec::new(),
            quote: QuoteBehaviour::Fail(GetQuoteStatus::Error),
            quote_calls: 0,
            quote_requests: Vec::new(),
            pending_quote: None,
        }
    }

    fn shared_mask(&self) -> u64 {
        1 << (self.gpaw - 1)
    }

    fn scrambled(&mut self) -> Vec<u8> {
        self.scramble = self.scramble.wrapping_mul(31).wrapping_add(7);
        (0..PAGE_SIZE as usize)
            .map(|i| self.scramble ^ (i as u8))
            .collect()
    }

    fn add(&mut self, gpa: u64, pages: u64, state: PageState) {
        for i in 0..pages {
            let c = self.scrambled();
            self.pages.insert(gpa + i * PAGE_SIZE, (state, c));
        }
    }
    pub fn add_private(&mut self, gpa: u64, pages: u64) {
        for i in 0..pages {
            self.pages.insert(
                gpa + i * PAGE_SIZE,
                (PageState::Private, vec![0; PAGE_SIZE as usize]),
            );
        }
    }
    pub fn add_pending(&mut self, gpa: u64, pages: u64) {
        self.add(gpa, pages, PageState::Pending);
    }
    pub fn add_shared(&mut self, gpa: u64, pages: u64) {
        self.add(gpa, pages, PageState::Shared);
    }
    pub fn state(&self, gpa: u64) -> Option<PageState> {
        self.pages.get(&(gpa & !(PAGE_SIZE - 1))).map(|p| p.0)
    }
    pub fn is_shared(&self, gpa: u64) -> bool {
        self.state(gpa) == Some(PageState::Shared)
    }

    fn read(&self, gpa: u64, len: usize, want: PageState) -> Option<Vec<u8>> {
        (0..len as u64)
            .map(|i| {
                let a = gpa + i;
                let (s, c) = self.pages.get(&(a & !(PAGE_SIZE - 1)))?;
                (*s == want).then(|| c[(a % PAGE_SIZE) as usize])
            })
            .collect()
    }
    fn write(&mut self, gpa: u64, data: &[u8], want: PageState) -> bool {
        for (i, b) in data.iter().enumerate() {
            let a = gpa + i as u64;
            match self.pages.get_mut(&(a & !(PAGE_SIZE - 1))) {
                Some((s, c)) if *s == want => c[(a % PAGE_SIZE) as usize] = *b,
                _ => return false,
            }
        }
        true
    }
    pub fn read_private(&self, gpa: u64, len: usize) -> Vec<u8> {
        self.read(gpa, len, PageState::Private).expect("private")
    }
    pub fn write_private(&mut self, gpa: u64, data: &[u8]) {
        assert!(
            self.write(gpa, data, PageState::Private) || self.write(gpa, data, PageState::Pending)
        );
    }
    pub fn read_shared(&self, gpa: u64, len: usize) -> Vec<u8> {
        self.read(gpa, len, PageState::Shared).expect("shared")
    }
    pub fn write_shared(&mut self, gpa: u64, data: &[u8]) {
        assert!(self.write(gpa, data, PageState::Shared));
    }

    /// The TDX module injects a #VE; one arriving while the last is unread is a #DF.
    pub fn raise_ve(&mut self, v: VeInfo) {
        if self.ve.is_some() {
            self.double_fault = true;
        }
        self.ve = Some(v);
    }

    /// One poll interval of the VMM: progresses an in-flight GetQuote.
    pub fn tick(&mut self) {
        let Some((gpa, left)) = self.pending_quote.take() else {
            return;
        };
        let (status, quote) = match &self.quote {
            QuoteBehaviour::After(_, q) if left > 1 => {
                self.pending_quote = Some((gpa, left - 1));
                return;
            }
            QuoteBehaviour::After(_, q) => (GetQuoteStatus::Success, q.clone()),
            QuoteBehaviour::Fail(s) => (*s, Vec::new()),
            QuoteBehaviour::Refuse(_) => return,
        };
        let mut hdr = [0u8; HEADER_LEN];
        Header {
            version: 1,
            status,
            in_len: 0,
            out_len: quote.len() as u32,
        }
        .emit(&mut hdr)
        .unwrap();
        self.write_shared(gpa, &hdr);
        self.write_shared(gpa + HEADER_LEN as u64, &quote);
    }

    fn convert(&mut self, gpa: u64, to_shared: bool) {
        let c = self.scrambled();
        let state = if to_shared {
            PageState::Shared
        } else if self.keep_accepted_on_private == Some(gpa) {
            return self
                .pages
                .get_mut(&gpa)
                .map_or((), |p| p.0 = PageState::Private);
        } else {
            PageState::Pending
        };
        self.pages.insert(gpa, (state, c));
    }

    fn accept_page(&mut self, gpa: u64) -> u64 {
        match self.pages.get_mut(&gpa) {
            Some((s @ PageState::Pending, c)) => {
                *s = PageState::Private;
                c.fill(0);
                TDX_SUCCESS
            }
            Some((PageState::Private, _)) => TDX_PAGE_ALREADY_ACCEPTED,
            _ => TDX_EPT_WALK_FAILED,
        }
    }

    fn accept(&mut self, rcx: u64) -> u64 {
        if self.busy_accepts > 0 {
            self.busy_accepts -= 1;
            return TDX_OPERAND_BUSY;
        }
        let level = rcx & 7;
        let gpa = rcx & !0xFFF;
        if level == 1 {
            if self.mapped_4k_only.contains(&gpa) {
                return TDX_PAGE_SIZE_MISMATCH;
            }
            let states: Vec<_> = (0..512).map(|i| self.state(gpa + i * PAGE_SIZE)).collect();
            if states
                .iter()
                .any(|s| matches!(s, None | Some(PageState::Shared)))
            {
                return TDX_EPT_WALK_FAILED;
            }
            self.accepts_2m += 1;
            if states.iter().all(|s| *s == Some(PageState::Private)) {
                return TDX_PAGE_ALREADY_ACCEPTED;
            }
            for i in 0..512 {
                self.accept_page(gpa + i * PAGE_SIZE);
            }
            return TDX_SUCCESS;
        }
        self.accepts_4k += 1;
        self.accept_page(gpa)
    }

    fn vmcall(&mut self, r: &mut Regs) {
        let mut status = VmcallStatus::Success;
        let shared = self.shared_mask();
        match r.r11 {
            VMCALL_IO => {
                if self.io_status != VmcallStatus::Success {
                    status = self.io_status;
                } else if r.r13 == 0 {
                    r.r11 = u64::from(self.port_value);
                } else {
                    self.port_writes
                        .push((r.r14 as u16, r.r12 as u8, r.r15 as u32));
                }
            }
            VMCALL_CPUID => {
                r.r12 = r.r12.wrapping_add(1) & 0xFFFF_FFFF;
                (r.r13, r.r14, r.r15) = (1, 2, 3);
            }
            VMCALL_RDMSR => r.r11 = self.msrs.get(&(r.r12 as u32)).copied().unwrap_or(0),
            VMCALL_WRMSR => {
                self.msrs.insert(r.r12 as u32, r.r13);
            }
            VMCALL_HLT => {
                self.halts += 1;
                self.last_hlt_blocked = Some(r.r12 != 0);
            }
            VMCALL_MMIO => {
                if r.r14 & shared == 0 {
                    status = VmcallStatus::InvalidOperand;
                } else if r.r13 == 0 {
                    r.r11 = self.mmio.get(&r.r14).copied().unwrap_or(0);
                } else {
                    self.mmio.insert(r.r14, r.r15);
                }
            }
            VMCALL_MAP_GPA => {
                self.map_gpa_calls += 1;
                self.map_gpa_starts.push(r.r12);
                let to_shared = r.r12 & shared != 0;
                let start = r.r12 & !shared;
                let pages = r.r13 / PAGE_SIZE;
                let n = match self.map_gpa_script {
                    MapGpaScript::All => pages,
                    MapGpaScript::PagesPerCall(n) => n.min(pages),
                    MapGpaScript::RetryAt(at) => {
                        r.r10 = VmcallStatus::Retry.to_u64();
                        r.r11 = at;
                        return;
                    }
                    MapGpaScript::Fail(s) => {
                        r.r10 = s.to_u64();
                        return;
                    }
                };
                for i in 0..n {
                    self.convert(start + i * PAGE_SIZE, to_shared);
                }
                if n < pages {
                    status = VmcallStatus::Retry;
                    r.r11 = (start + n * PAGE_SIZE) | (r.r12 & shared);
                }
            }
            VMCALL_GET_QUOTE => {
                self.quote_calls += 1;
                if let QuoteBehaviour::Refuse(s) = self.quote {
                    status = s;
                } else {
                    let gpa = r.r12 & !shared;
                    let hdr = Header::parse(&self.read_shared(gpa, HEADER_LEN)).unwrap();
                    let data = self.read_shared(gpa + HEADER_LEN as u64, hdr.in_len as usize);
                    self.quote_requests.push(data);
                    let mut h = [0u8; HEADER_LEN];
                    Header {
                        status: GetQuoteStatus::InFlight,
                        ..hdr
                    }
                    .emit(&mut h)
                    .unwrap();
                    self.write_shared(gpa, &h);
                    let polls = match self.quote {
                        QuoteBehaviour::After(n, _) => n,
                        _ => 1,
                    };
                    self.pending_quote = Some((gpa, polls));
                }
            }
            _ => status = VmcallStatus::InvalidOperand,
        }
        r.r10 = status.to_u64();
    }
}

impl Tdcall for FakeTdx {
    fn tdcall(&mut self, r: &mut Regs) {
        if let Some(status) = self.fail_next_tdcall.take() {
            r.rax = status;
            return;
        }
        let leaf = r.rax;
        r.rax = TDX_SUCCESS;
        match leaf {
            TDG_VP_VMCALL => {
                if r.rcx != EXPOSE_REGS {
                    r.rax = TDX_OPERAND_INVALID | 1;
                } else {
                    self.vmcall(r);
                }
            }
            TDG_VP_INFO => {
                *r = Regs {
                    rax: 0,
                    rcx: self.gpaw,
                    rdx: self.attributes,
                    r8: (1 << 32) | 1,
                    ..Regs::default()
                };
            }
            TDG_VP_VEINFO_GET => match self.ve.take() {
                Some(v) => *r = v.to_regs(),
                None => r.rax = TDX_NO_VALID_VE_INFO,
            },
            TDG_MR_REPORT => match self.read(r.rdx, 64, PageState::Private) {
                Some(data) if self.read(r.rcx, 1024, PageState::Private).is_some() => {
                    let mut report = vec![0u8; 1024];
                    report[0] = 0x81;
                    report[128..192].copy_from_slice(&data);
                    self.write(r.rcx, &report, PageState::Private);
                }
                _ => r.rax = TDX_OPERAND_INVALID,
            },
            TDG_MR_RTMR_EXTEND => match self.read(r.rcx, 48, PageState::Private) {
                Some(d) => {
                    let mut digest = [0u8; 48];
                    digest.copy_from_slice(&d);
                    self.rtmr_extends.push((r.rdx, digest));
                }
                None => r.rax = TDX_OPERAND_INVALID,
            },
            TDG_MEM_PAGE_ACCEPT => r.rax = self.accept(r.rcx),
            _ => r.rax = TDX_OPERAND_INVALID,
        }
    }
}
