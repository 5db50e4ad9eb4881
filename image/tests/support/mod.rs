//! Helpers shared by the image suites (`kms_image.rs` on the SEV-SNP builds, `loopback_tdx.rs`
//! on the loopback-TDX build): the test PKI, provisioning and `ckms verify` against a running
//! [`Vm`], and running `ckms` as a user. Each suite uses the subset it needs.
#![allow(dead_code)]

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

use image::run::Vm;
use testkit::workspace_bin;

/// Copies the working tree without build outputs, git metadata and fuzzing corpora; files that
/// vanish while copying (a fuzzer at work) are skipped.
pub fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
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

/// Runs `cmd`, which must succeed.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Test PKI with openssl in `dir`: a server CA (`ca.pem`/`ca.key`), a user CA (`users.pem`),
/// alice's certificate (`alice.pem`/`alice.key`, valid from 2020: the guest's RTC may lag the
/// host's clock by a few seconds) and a database secret (`db.secret`).
pub fn pki(dir: &Path) {
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

/// `ckms bootstrap start` against `vm`: attests it with `manifest` and `trust_root` (the
/// emulator's root), has the test CA of [`pki`] sign its CSR, gives it Redis (QEMU's guestfwd)
/// and the user CA, and starts it. Returns ckms's stdout.
pub fn provision(vm: &Vm, dir: &Path, manifest: &Path, trust_root: &Path) -> String {
    let ratls = vm.ratls_port.expect("RA-TLS port forwarded");
    let out = run(Command::new(workspace_bin("ckms"))
        .current_dir(dir)
        .env_remove("CKMS_CONF")
        .args([
            "bootstrap",
            "start",
            "--url",
            &format!("https://{}", vm.addr()),
        ])
        .arg("--manifest")
        .arg(manifest)
        .arg("--trust-root")
        .arg(trust_root)
        .args(["--subject", "CN=kms.test", "--ip", "127.0.0.1"])
        .args([
            "--ca-cert",
            "ca.pem",
            "--ca-key",
            "ca.key",
            "--redis-url",
            "redis://10.0.2.100:6379",
        ])
        .args(["--db-secret-file", "db.secret", "--client-ca", "users.pem"])
        .args(["--ra-tls-url", &format!("https://127.0.0.1:{ratls}")]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ckms` as alice against `vm`'s KMS port.
pub fn ckms(vm: &Vm, dir: &Path, args: &[&str]) -> Output {
    Command::new(workspace_bin("ckms"))
        .current_dir(dir)
        .env_remove("CKMS_CONF")
        .args([
            "--url",
            &format!("https://{}", vm.addr()),
            "--ca-cert",
            "ca.pem",
        ])
        .args(["--client-cert", "alice.pem", "--client-key", "alice.key"])
        .args(args)
        .output()
        .expect("run ckms")
}

/// The stdout of a `ckms` run that must succeed.
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "ckms failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stdout then stderr.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `ckms verify` against `vm` with `manifest` as the expectation and `trust_root` trusted.
pub fn verify(vm: &Vm, dir: &Path, manifest: &Path, trust_root: &Path) -> Output {
    let ratls = vm.ratls_port.expect("RA-TLS port forwarded");
    Command::new(workspace_bin("ckms"))
        .current_dir(dir)
        .env_remove("CKMS_CONF")
        .args([
            "--url",
            &format!("https://{}", vm.addr()),
            "--ca-cert",
            "ca.pem",
        ])
        .args(["--client-cert", "alice.pem", "--client-key", "alice.key"])
        .arg("verify")
        .arg("--manifest")
        .arg(manifest)
        .arg("--trust-root")
        .arg(trust_root)
        .args(["--ra-tls-url", &format!("https://127.0.0.1:{ratls}")])
        .output()
        .expect("run ckms verify")
}

/// A key, an encryption and a decryption with `ckms sym` as alice; returns the key's uid.
pub fn sym_round_trip(vm: &Vm, dir: &Path, tag: &str, plaintext: &[u8]) -> String {
    let created = ok(ckms(vm, dir, &["sym", "keys", "create", "--tag", tag]));
    let uid = created.split_whitespace().last().expect("uid").to_string();
    // Used at once: ckms sets ActivationDate to the host's current second, and the guest's wall
    // clock (RTC edge + TSC, rounded up) is never behind it (kernel/src/time.rs).
    let (plain, enc, dec) = (
        format!("{tag}.txt"),
        format!("{tag}.enc"),
        format!("{tag}.dec"),
    );
    fs::write(dir.join(&plain), plaintext).expect("write");
    ok(ckms(
        vm,
        dir,
        &["sym", "encrypt", "--tag", tag, "-i", &plain, "-o", &enc],
    ));
    ok(ckms(
        vm,
        dir,
        &["sym", "decrypt", "--tag", tag, "-i", &enc, "-o", &dec],
    ));
    assert_eq!(fs::read(dir.join(&dec)).expect("read"), plaintext);
    uid
}

/// One VM at a time per suite: TCG boots compete for the same cores.
pub fn vm_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
