//! A real binary KMIP client against `kms-server`'s KMIP port: PyKMIP (PyPI) over mutual TLS
//! creates, activates, gets, encrypts and decrypts with (AES-GCM), revokes and destroys an
//! AES-256 key (`tests/pykmip/client.py`), in KMIP 2.0.
//!
//! PyKMIP is found, in order: `$PYKMIP_PYTHON` (a Python that imports `kmip`), `python3` if it
//! imports `kmip`, or a virtualenv created in this test's temp dir with
//! `pip install pykmip==0.11.0`. If none works the test fails: it never skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Harness;

const PYKMIP_VERSION: &str = "0.11.0";

/// A Python interpreter that imports `kmip`.
fn python_with_pykmip(tmp: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("PYKMIP_PYTHON") {
        return PathBuf::from(p);
    }
    let imports = |python: &Path| {
        Command::new(python)
            .args(["-c", "import kmip"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if imports(Path::new("python3")) {
        return PathBuf::from("python3");
    }
    let venv = testkit::pip_venv(
        tmp,
        &format!("pykmip=={PYKMIP_VERSION}"),
        "set PYKMIP_PYTHON to a Python that imports kmip",
    );
    let python = venv.join("bin/python");
    assert!(imports(&python), "PyKMIP installed but not importable");
    python
}

#[test]
fn pykmip_over_the_kmip_port() {
    let mut h = Harness::start(&["--database", "memory", "--kmip-port", "0"]);
    let python = python_with_pykmip(h.dir.path());
    let alice = h.user("alice");
    let addr = h.server.kmip_addr.expect("KMIP port");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pykmip/client.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(&h.pki.ca_cert)
        .arg(&alice.cert)
        .arg(&alice.key)
        .output()
        .expect("run the PyKMIP client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "PyKMIP client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "create",
        "activate",
        "get",
        "encrypt",
        "decrypt",
        "revoke",
        "destroy",
        "get after",
        "done",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(step)),
            "no {step} step in:\n{stdout}"
        );
    }
}
