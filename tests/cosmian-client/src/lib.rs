//! Test-only package: see `tests/cosmian_client.rs` and README.md.
