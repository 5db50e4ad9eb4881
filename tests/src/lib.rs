//! End-to-end tests: QEMU + Redis + ckms + kms-server
