//! `kms-nostd-check`: a freestanding x86-64 Linux binary (no std, no libc, no C runtime) that
//! links the `kms` core and drives it: Create an AES key, Encrypt and Decrypt through
//! `Kms::kmip_json` (run with `kms::block_on`), CreateKeyPair and Sign, over a `MemoryStore` and a dummy RNG; then, with
//! the `tls` feature, a full TLS 1.3 handshake (rustls unbuffered client, ring, RDRAND via the
//! `getrandom-rdrand` patch) against `kms::conn::Conn` (the App of both servers) and `GET /health` through it.
//!
//! If the core (or anything it depends on) needed std, this would not link; if it pulled a
//! dynamic dependency, `scripts/nostd-check` finds undefined symbols or an INTERP segment.
//! It prints `nostd-check: ok` and exits 0, or prints what failed and exits 1.
//!
//! This crate is one of the few places outside the kernel that need `unsafe`: the entry
//! point, the raw system calls and the global allocator (the `mem*` functions a freestanding
//! link must provide come from `freestanding-rt`). Each block says why it is sound.
#![no_std]
#![no_main]

extern crate alloc;

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};

use kms::crypto::{Random, RngError};
use kms::store::memory::MemoryStore;
use kms::{Env, Kms, KmsConfig};

// ------------------------------------------------------------------ the check itself

/// Not random at all: enough to exercise the code paths, never for real keys.
struct DummyRng(u64);

impl Random for DummyRng {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), RngError> {
        for b in buf {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (self.0 >> 33) as u8;
        }
        Ok(())
    }
}

const CREATE: &[u8] = br#"{"tag":"Create","type":"Structure","value":[
 {"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},
 {"tag":"Attributes","type":"Structure","value":[
  {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},
  {"tag":"CryptographicLength","type":"Integer","value":256},
  {"tag":"CryptographicUsageMask","type":"Integer","value":2108},
  {"tag":"ActivationDate","type":"DateTime","value":"2024-01-01T00:00:00Z"},
  {"tag":"VendorAttributes","type":"Structure","value":[{"tag":"VendorAttributes","type":"Structure","value":[
   {"tag":"VendorIdentification","type":"TextString","value":"cosmian"},
   {"tag":"AttributeName","type":"TextString","value":"tag"},
   {"tag":"AttributeValue","type":"ByteString","value":"5B226E6F737464225D"}]}]}]}]}"#;

const ENCRYPT: &[u8] = br#"{"tag":"Encrypt","type":"Structure","value":[
 {"tag":"UniqueIdentifier","type":"TextString","value":"[\"nostd\"]"},
 {"tag":"IVCounterNonce","type":"ByteString","value":"000102030405060708090A0B"},
 {"tag":"Data","type":"ByteString","value":"48656C6C6F"}]}"#;

const CREATE_PAIR: &[u8] = br#"{"tag":"CreateKeyPair","type":"Structure","value":[
 {"tag":"CommonAttributes","type":"Structure","value":[
  {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"ECDSA"},
  {"tag":"RecommendedCurve","type":"Enumeration","value":"P256"},
  {"tag":"ActivationDate","type":"DateTime","value":"2024-01-01T00:00:00Z"}]},
 {"tag":"PrivateKeyAttributes","type":"Structure","value":[
  {"tag":"VendorAttributes","type":"Structure","value":[{"tag":"VendorAttributes","type":"Structure","value":[
   {"tag":"VendorIdentification","type":"TextString","value":"cosmian"},
   {"tag":"AttributeName","type":"TextString","value":"tag"},
   {"tag":"AttributeValue","type":"ByteString","value":"5B227369676E225D"}]}]}]}]}"#;

const SIGN: &[u8] = br#"{"tag":"Sign","type":"Structure","value":[
 {"tag":"UniqueIdentifier","type":"TextString","value":"[\"sign\"]"},
 {"tag":"Data","type":"ByteString","value":"48656C6C6F"}]}"#;

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The value of the first `"tag":"<tag>"` item's `"value":"..."` in a response.
fn value_of<'a>(json: &'a [u8], tag: &[u8]) -> Option<&'a [u8]> {
    let mut pat = alloc::vec::Vec::new();
    pat.extend_from_slice(b"{\"tag\":\"");
    pat.extend_from_slice(tag);
    pat.extend_from_slice(b"\"");
    let start = json.windows(pat.len()).position(|w| w == pat.as_slice())?;
    let rest = json.get(start..)?;
    let v = rest.windows(9).position(|w| w == b"\"value\":\"")? + 9;
    let rest = rest.get(v..)?;
    let end = rest.iter().position(|c| *c == b'"')?;
    rest.get(..end)
}

fn run() -> Result<(), &'static str> {
    let kms = Kms::new(MemoryStore::new(), KmsConfig::default());
    let mut rng = DummyRng(42);
    let mut env = Env {
        now: 1_750_000_000,
        rng: &mut rng,
    };
    let out = kms::block_on(kms.kmip_json(&mut env, "admin", CREATE), || {})
        .map_err(|_| "Create failed")?;
    if !contains(&out, b"CreateResponse") {
        return Err("no CreateResponse");
    }
    let enc = kms::block_on(kms.kmip_json(&mut env, "admin", ENCRYPT), || {})
        .map_err(|_| "Encrypt failed")?;
    let ct = value_of(&enc, b"Data").ok_or("no ciphertext")?;
    let tag = value_of(&enc, b"AuthenticatedEncryptionTag").ok_or("no tag")?;
    let mut dec = alloc::vec::Vec::new();
    dec.extend_from_slice(br#"{"tag":"Decrypt","value":[{"tag":"UniqueIdentifier","type":"TextString","value":"[\"nostd\"]"},{"tag":"IVCounterNonce","type":"ByteString","value":"000102030405060708090A0B"},{"tag":"Data","type":"ByteString","value":""#);
    dec.extend_from_slice(ct);
    dec.extend_from_slice(
        br#""},{"tag":"AuthenticatedEncryptionTag","type":"ByteString","value":""#,
    );
    dec.extend_from_slice(tag);
    dec.extend_from_slice(br#""}]}"#);
    let pt = kms::block_on(kms.kmip_json(&mut env, "admin", &dec), || {})
        .map_err(|_| "Decrypt failed")?;
    if value_of(&pt, b"Data") != Some(b"48656C6C6F") {
        return Err("Decrypt gave the wrong plaintext");
    }
    let pair = kms::block_on(kms.kmip_json(&mut env, "admin", CREATE_PAIR), || {})
        .map_err(|_| "CreateKeyPair failed")?;
    if !contains(&pair, b"PublicKeyUniqueIdentifier") {
        return Err("no key pair");
    }
    let sig =
        kms::block_on(kms.kmip_json(&mut env, "admin", SIGN), || {}).map_err(|_| "Sign failed")?;
    if value_of(&sig, b"SignatureData").is_none() {
        return Err("no signature");
    }
    Ok(())
}

// ------------------------------------------------------------------ TLS (feature `tls`)

const CA_DER: &[u8] = include_bytes!("../data/ca.der");
const SERVER_DER: &[u8] = include_bytes!("../data/server.der");
const SERVER_KEY_PKCS8: &[u8] = include_bytes!("../data/server.key.pk8.der");
/// Inside the fixtures' validity (2026-11-29 .. 2126).
const TLS_NOW: i64 = 1_830_000_000;

/// Client side: moves the client's records out and the server's in, and collects plaintext.
fn client_step(
    client: &mut rustls::client::UnbufferedClientConnection,
    incoming: &mut alloc::vec::Vec<u8>,
    outgoing: &mut alloc::vec::Vec<u8>,
    request: &mut Option<&[u8]>,
    plaintext: &mut alloc::vec::Vec<u8>,
) -> Result<(), &'static str> {
    use rustls::unbuffered::ConnectionState;
    for _ in 0..64 {
        let status = client.process_tls_records(incoming);
        let discard = status.discard;
        let mut done = false;
        match status.state.map_err(|_| "client: TLS error")? {
            ConnectionState::ReadTraffic(mut r) => {
                while let Some(rec) = r.next_record() {
                    plaintext.extend_from_slice(rec.map_err(|_| "client: bad record")?.payload);
                }
            }
            ConnectionState::EncodeTlsData(mut e) => {
                let mut buf = [0u8; 4096];
                let n = e.encode(&mut buf).map_err(|_| "client: encode")?;
                outgoing.extend_from_slice(buf.get(..n).ok_or("client: encode length")?);
            }
            ConnectionState::TransmitTlsData(t) => t.done(),
            ConnectionState::WriteTraffic(mut w) => {
                if let Some(req) = request.take() {
                    let mut buf = [0u8; 4096];
                    let n = w.encrypt(req, &mut buf).map_err(|_| "client: encrypt")?;
                    outgoing.extend_from_slice(buf.get(..n).ok_or("client: encrypt length")?);
                } else {
                    done = true;
                }
            }
            _ => done = true,
        }
        incoming.drain(..discard.min(incoming.len()));
        if done {
            return Ok(());
        }
    }
    Err("client: no progress")
}

/// A full TLS 1.3 handshake (rustls client, unbuffered) against `kms::conn::Conn` (the App of
/// both servers) with the ring provider and RDRAND randomness, then `GET /health` through it.
fn tls_check(env: &mut Env<'_>) -> Result<(), &'static str> {
    use alloc::sync::Arc;
    use alloc::vec::Vec;
    use kms::app::{App, AppConfig, Listener, ServerTls};
    use kms::conn::Conn;

    let tls = ServerTls {
        chain: alloc::vec![Vec::from(SERVER_DER), Vec::from(CA_DER)],
        key: kms::x509::PrivateKey::Pkcs8(Vec::from(SERVER_KEY_PKCS8)),
        client_ca: None,
        fixed_user: None,
    };
    let app: Arc<App<MemoryStore>> = Arc::new(
        App::serving(MemoryStore::new(), tls, AppConfig::default())
            .map_err(|_| "TLS server config")?,
    );
    app.set_time(TLS_NOW);

    #[derive(Debug)]
    struct Fixed;
    impl rustls::time_provider::TimeProvider for Fixed {
        fn current_time(&self) -> Option<rustls::pki_types::UnixTime> {
            Some(rustls::pki_types::UnixTime::since_unix_epoch(
                core::time::Duration::from_secs(TLS_NOW as u64),
            ))
        }
    }
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(CA_DER))
        .map_err(|_| "TLS root")?;
    let client_config = rustls::ClientConfig::builder_with_details(
        Arc::new(rustls::crypto::ring::default_provider()),
        Arc::new(Fixed),
    )
    .with_safe_default_protocol_versions()
    .map_err(|_| "TLS client versions")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("kms.test").map_err(|_| "server name")?;
    let mut client = rustls::client::UnbufferedClientConnection::new(Arc::new(client_config), name)
        .map_err(|_| "TLS client")?;

    let mut server = Conn::accept(&app, Listener::Main).map_err(|_| "TLS conn")?;
    let mut request: Option<&[u8]> = Some(b"GET /health HTTP/1.1\r\nHost: kms.test\r\n\r\n");
    let (mut to_client, mut to_server, mut answer) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..16 {
        client_step(
            &mut client,
            &mut to_client,
            &mut to_server,
            &mut request,
            &mut answer,
        )?;
        if !to_server.is_empty() {
            if server.on_tls(&app, env, &to_server).close {
                return Err("TLS server closed the connection");
            }
            to_server.clear();
        }
        to_client.extend_from_slice(server.pending_tls());
        let n = server.pending_tls().len();
        server.consume_tls(n);
        if answer.starts_with(b"HTTP/1.1 200") {
            return Ok(());
        }
    }
    Err("no HTTP answer through TLS")
}

fn main() -> i32 {
    let tls = {
        let mut rng = DummyRng(7);
        let mut env = Env {
            now: TLS_NOW,
            rng: &mut rng,
        };
        tls_check(&mut env)
    };
    match run().and(tls) {
        Ok(()) => {
            write(b"nostd-check: ok\n");
            0
        }
        Err(m) => {
            write(b"nostd-check: FAILED: ");
            write(m.as_bytes());
            write(b"\n");
            1
        }
    }
}

// ------------------------------------------------------------------ Linux system calls

fn write(s: &[u8]) {
    // SAFETY: write(2) on fd 1 reads `s.len()` bytes from `s`, a valid borrowed slice; the
    // kernel clobbers only rcx and r11, which are declared.
    unsafe {
        core::arch::asm!("syscall", inlateout("rax") 1usize => _, in("rdi") 1usize,
            in("rsi") s.as_ptr(), in("rdx") s.len(), lateout("rcx") _, lateout("r11") _,
            options(nostack));
    }
}

fn exit(code: i32) -> ! {
    // SAFETY: exit_group(2) never returns.
    unsafe {
        core::arch::asm!("syscall", in("rax") 231usize, in("rdi") code as isize, options(noreturn, nostack));
    }
}

extern "C" fn rust_start() -> ! {
    exit(main())
}

/// ELF entry point. The kernel enters with rsp 16-byte aligned and no return address; align
/// explicitly and `call` so the Rust code sees the System V ABI stack layout.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    core::arch::naked_asm!("xor ebp, ebp", "and rsp, -16", "call {}", "ud2", sym rust_start)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    write(b"nostd-check: panic\n");
    exit(101)
}

// ------------------------------------------------------------------ allocator: a bump arena

const HEAP_SIZE: usize = 32 * 1024 * 1024;

#[repr(C, align(4096))]
struct Heap(core::cell::UnsafeCell<[u8; HEAP_SIZE]>);

// SAFETY: the arena is only handed out in disjoint pieces by `Bump::alloc` (atomic offset).
unsafe impl Sync for Heap {}

static HEAP: Heap = Heap(core::cell::UnsafeCell::new([0; HEAP_SIZE]));

struct Bump {
    next: AtomicUsize,
}

// SAFETY: `alloc` returns non-overlapping, suitably aligned blocks inside `HEAP` (or null when
// exhausted); `dealloc` never reuses memory, so no block is ever handed out twice.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = HEAP.0.get() as usize;
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            let Some(start) = (base + cur).checked_next_multiple_of(layout.align()) else {
                return core::ptr::null_mut();
            };
            let off = start - base;
            let Some(end) = off.checked_add(layout.size()) else {
                return core::ptr::null_mut();
            };
            if end > HEAP_SIZE {
                return core::ptr::null_mut();
            }
            match self
                .next
                .compare_exchange_weak(cur, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return start as *mut u8,
                Err(now) => cur = now,
            }
        }
    }
    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static ALLOC: Bump = Bump {
    next: AtomicUsize::new(0),
};

// ------------------------------------------------------------------ what libc would provide

// memcpy, memmove, memset, memcmp, bcmp, strlen and rust_eh_personality: the shared
// `freestanding-rt` crate (`runtime/`), linked only if named.
extern crate freestanding_rt;

/// Referenced by the precompiled `core` (built with unwinding); never called with
/// `panic = "abort"`.
#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_Resume() -> ! {
    exit(134)
}
