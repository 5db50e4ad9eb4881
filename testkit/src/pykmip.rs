//! PyKMIP (PyPI), a real binary KMIP client, against a KMIP port: the script `pykmip/client.py`
//! creates, activates, gets, encrypts and decrypts with (AES-GCM), revokes and destroys an
//! AES-256 key in KMIP 2.0 over mutual TLS. Shared by `kms/server/tests/pykmip.rs` (host server)
//! and `image/tests/kms_image.rs` (the image).
//!
//! PyKMIP is found, in order: `$PYKMIP_PYTHON` (a Python that imports `kmip`), `python3` if it
//! imports `kmip`, or a virtualenv created under the given directory with
//! `pip install pykmip==0.11.0`. If none works the caller's test fails: it never skips.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The PyKMIP release installed when no Python with PyKMIP is given.
pub const PYKMIP_VERSION: &str = "0.11.0";

/// The lines `client.py` prints, in order, one per step; [`run_client`] checks each is there.
pub const STEPS: &[&str] = &[
    "create",
    "activate",
    "get",
    "encrypt",
    "decrypt",
    "revoke",
    "destroy",
    "get after",
    "done",
];

/// A Python interpreter that imports `kmip` (see the module docs); a venv goes under `tmp`.
pub fn python_with_pykmip(tmp: &Path) -> PathBuf {
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
    let venv = crate::pip_venv(
        tmp,
        &format!("pykmip=={PYKMIP_VERSION}"),
        "set PYKMIP_PYTHON to a Python that imports kmip",
    );
    let python = venv.join("bin/python");
    assert!(imports(&python), "PyKMIP installed but not importable");
    python
}

/// Runs `client.py` with `python` against the KMIP port at `addr`, trusting `ca` for the
/// server and authenticating with `cert`/`key` (PEM); panics with PyKMIP's output unless it
/// exits successfully having printed every one of [`STEPS`]. Returns its standard output.
pub fn run_client(python: &Path, addr: SocketAddr, ca: &Path, cert: &Path, key: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("pykmip/client.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(ca)
        .arg(cert)
        .arg(key)
        .output()
        .unwrap_or_else(|e| panic!("run the PyKMIP client {}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "PyKMIP client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in STEPS {
        assert!(
            stdout.lines().any(|l| l.starts_with(step)),
            "no {step} step in:\n{stdout}"
        );
    }
    stdout
}
