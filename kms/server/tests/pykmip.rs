//! A real binary KMIP client against `kms-server`'s KMIP port: PyKMIP (PyPI) over mutual TLS
//! creates, activates, gets, encrypts and decrypts with (AES-GCM), revokes and destroys an
//! AES-256 key (`testkit/pykmip/client.py`, run by [`testkit::pykmip`], which
//! `image/tests/kms_image.rs` also runs against the image), in KMIP 2.0.
//!
//! PyKMIP is found, in order: `$PYKMIP_PYTHON` (a Python that imports `kmip`), `python3` if it
//! imports `kmip`, or a virtualenv created in this test's temp dir with
//! `pip install pykmip==0.11.0`. If none works the test fails: it never skips.

mod common;

use common::Harness;

#[test]
fn pykmip_over_the_kmip_port() {
    let mut h = Harness::start(&["--database", "memory", "--kmip-port", "0"]);
    let python = testkit::pykmip::python_with_pykmip(h.dir.path());
    let alice = h.user("alice");
    let addr = h.server.kmip_addr.expect("KMIP port");
    testkit::pykmip::run_client(&python, addr, &h.pki.ca_cert, &alice.cert, &alice.key);
}
