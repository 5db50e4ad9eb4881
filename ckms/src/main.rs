//! ckms: the KMS command-line client (KMIP operations, bootstrap, verify, attestation)
fn main() {}
