//! Host-mode KMS server: std TCP + rustls around the sans-IO kms core
fn main() {}
