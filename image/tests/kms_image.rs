//! The KMS inside the image, end to end (issue 7): the default image boots to the bootstrap
//! server; `ckms bootstrap start` attests it (emulated SNP, the manifest's measurement), has a
//! local CA sign its CSR, gives it a Redis (reached through QEMU's guestfwd) and a user CA, and
//! starts it; `ckms verify` passes; a user creates a key, encrypts and decrypts through the VM;
//! garbage, oversized and idle connections do not stop it from serving; a second VM booted on the
//! same Redis and re-provisioned with the same secret finds the key.
//!
//! Slow (a kernel build and two boots under TCG): compiled only with `--features vm-tests`. Needs
//! `cargo build --workspace --bins` first (`ckms`, `snp-emu`, `image`), `redis-server` and `openssl`.
#![cfg(feature = "vm-tests")]

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use image::build::{self, BuildOptions};
use image::run::{RunOptions, Vm};

const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("image/ has a parent").to_path_buf()
}

fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe.parent().and_then(Path::parent).expect("target dir").join(name);
    assert!(bin.is_file(), "{} is missing: run `cargo build --workspace --bins` first", bin.display());
    bin
}

/// Copies the working tree without build outputs, git metadata and fuzzing corpora; files that
/// vanish while copying (a fuzzer at work) are skipped.
fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dst)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        if matches!(name.to_str(), Some("target" | ".git" | ".tmp" | "fuzz")) {
            continue;
        }
        let to = dst.join(&name);
        let copied = match entry.file_type()? {
            t if t.is_dir() => copy_tree(&entry.path(), &to),
            t if t.is_file() => fs::copy(entry.path(), &to).map(drop),
            _ => Ok(()),
        };
        match copied {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A redis-server on a free loopback port, killed by PID on drop.
struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start(dir: &Path) -> Redis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { port, child }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Test PKI with openssl: a server CA, a user CA and alice's certificate (valid from 2020: the
/// guest's RTC may lag the host's clock by a few seconds).
fn pki(dir: &Path) {
    let sh = |script: &str| {
        run(Command::new("sh").arg("-ec").arg(script).current_dir(dir));
    };
    sh("openssl ecparam -name prime256v1 -genkey -noout -out ca.key
        openssl req -x509 -new -key ca.key -sha256 -days 30 -subj '/CN=test server CA' \
          -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign -out ca.pem
        openssl ecparam -name prime256v1 -genkey -noout -out users.key
        openssl req -x509 -new -key users.key -sha256 -days 30 -subj '/CN=test users CA' \
          -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign -out users.pem
        openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out alice.key
        openssl req -new -key alice.key -subj '/CN=alice' -out alice.csr
        printf 'basicConstraints=CA:FALSE\\nkeyUsage=digitalSignature\\nextendedKeyUsage=clientAuth\\n' > ext
        printf '[ca]\\ndefault_ca=d\\n[d]\\ndatabase=index.txt\\nnew_certs_dir=.\\nserial=serial\\ndefault_md=sha256\\npolicy=p\\n[p]\\ncommonName=supplied\\n' > ca.cnf
        : > index.txt; echo 01 > serial
        openssl ca -batch -config ca.cnf -cert users.pem -keyfile users.key -in alice.csr -out alice.pem \
          -startdate 20200101000000Z -enddate 20350101000000Z -extfile ext -notext 2>/dev/null
        head -c 32 /dev/urandom | base64 > db.secret");
}

fn start_vm(image_dir: &Path, redis: u16) -> Vm {
    let mut opts = RunOptions::new(image_dir);
    opts.memory = "128M".into();
    opts.snp_emu = Some(workspace_bin("snp-emu"));
    opts.redis_port = Some(redis);
    opts.redis_relay = Some(workspace_bin("image"));
    opts.ratls_port = Some(0);
    let t = Instant::now();
    let mut vm = Vm::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let ready = vm.wait_ready(BOOT_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("boot-to-ready (KMS bootstrap) under TCG: {:.1} s ({ready})", t.elapsed().as_secs_f64());
    vm
}

fn provision(vm: &Vm, dir: &Path, image_dir: &Path) -> String {
    let ratls = vm.ratls_port.expect("RA-TLS port forwarded");
    let out = run(Command::new(workspace_bin("ckms"))
        .current_dir(dir)
        .args(["bootstrap", "start", "--url", &format!("https://{}", vm.addr())])
        .arg("--manifest")
        .arg(image_dir.join("manifest.json"))
        .args(["--trust-root", "chain/ark.pem", "--subject", "CN=kms.test", "--ip", "127.0.0.1"])
        .args(["--ca-cert", "ca.pem", "--ca-key", "ca.key", "--redis-url", "redis://10.0.2.100:6379"])
        .args(["--db-secret-file", "db.secret", "--client-ca", "users.pem"])
        .args(["--ra-tls-url", &format!("https://127.0.0.1:{ratls}")]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ckms(vm: &Vm, dir: &Path, args: &[&str]) -> Output {
    Command::new(workspace_bin("ckms"))
        .current_dir(dir)
        .env_remove("CKMS_CONF")
        .args(["--url", &format!("https://{}", vm.addr()), "--ca-cert", "ca.pem"])
        .args(["--client-cert", "alice.pem", "--client-key", "alice.key"])
        .args(args)
        .output()
        .expect("run ckms")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "ckms failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn bootstrap_verify_and_kmip_in_the_image() {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kms-image");
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(&base).expect("mkdir");
    // Build from a snapshot of the tree (other work may change files meanwhile).
    let src = base.join("src");
    copy_tree(&repo(), &src).expect("copy the source tree");
    let mut opts = BuildOptions::new(&src);
    opts.out_dir = base.join("out");
    opts.cargo_target_dir = Some(base.join("kernel-target"));
    let t = Instant::now();
    build::build(&opts).unwrap_or_else(|e| panic!("image build: {e}"));
    eprintln!("image build: {:.0} s", t.elapsed().as_secs_f64());
    let image_dir = opts.out_dir.clone();

    let dir = base.join("work");
    fs::create_dir_all(&dir).expect("mkdir");
    pki(&dir);
    run(Command::new(workspace_bin("snp-emu")).arg("export-chain").arg(dir.join("chain")));
    let redis_dir = base.join("redis");
    fs::create_dir_all(&redis_dir).expect("mkdir");
    let redis = Redis::start(&redis_dir);

    let vm = start_vm(&image_dir, redis.port);
    let out = provision(&vm, &dir, &image_dir);
    assert!(out.contains("verified"), "{out}");
    assert!(vm.console_lines().iter().any(|l| l.contains("ckms: kms started")), "no start line");

    // A user: key, encrypt, decrypt, locate.
    let created = ok(ckms(&vm, &dir, &["sym", "keys", "create", "--tag", "e2e"]));
    let uid = created.split_whitespace().last().expect("uid").to_string();
    // ckms sets ActivationDate to the host's current second; the guest's clock is the RTC, one
    // second resolution with its own phase, so a key can look pre-active for up to a second.
    std::thread::sleep(Duration::from_millis(1100));
    fs::write(dir.join("plain.txt"), b"the unikernel keeps secrets").expect("write");
    ok(ckms(&vm, &dir, &["sym", "encrypt", "--tag", "e2e", "-i", "plain.txt", "-o", "plain.enc"]));
    ok(ckms(&vm, &dir, &["sym", "decrypt", "--tag", "e2e", "-i", "plain.enc", "-o", "plain.dec"]));
    assert_eq!(fs::read(dir.join("plain.dec")).expect("read"), b"the unikernel keeps secrets");

    // Hostile clients: TLS garbage, a plain-HTTP request, idle (slowloris) connections filling
    // the connection table. The KMS keeps serving.
    let mut garbage = TcpStream::connect(vm.addr()).expect("connect");
    garbage.write_all(&[0x16, 3, 1, 0xff, 0xff]).expect("write");
    garbage.write_all(&[0xa5; 4096]).expect("write");
    let mut plain = TcpStream::connect(vm.addr()).expect("connect");
    plain.write_all(b"POST /kmip/2_1 HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n").expect("write");
    plain.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut sink = Vec::new();
    let _ = plain.read_to_end(&mut sink); // closed by the guest (after an alert)
    let idle: Vec<TcpStream> = (0..40).filter_map(|_| TcpStream::connect(vm.addr()).ok()).collect();
    std::thread::sleep(Duration::from_secs(3));
    let located = ok(ckms(&vm, &dir, &["locate", "--tag", "e2e"]));
    assert!(located.contains(&uid), "{located}");
    drop(idle);
    drop(garbage);

    // Reboot on the same Redis, re-provision with the same secret: the key is still there.
    vm.stop();
    let vm = start_vm(&image_dir, redis.port);
    let out = provision(&vm, &dir, &image_dir);
    assert!(out.contains("verified"), "{out}");
    ok(ckms(&vm, &dir, &["sym", "decrypt", "--tag", "e2e", "-i", "plain.enc", "-o", "plain2.dec"]));
    assert_eq!(fs::read(dir.join("plain2.dec")).expect("read"), b"the unikernel keeps secrets");
    let heap = vm.console_lines().into_iter().filter(|l| l.contains("heap")).collect::<Vec<_>>();
    eprintln!("guest heap lines: {heap:?}");
}
