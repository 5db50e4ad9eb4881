//! image: build the unikernel image and its manifest, run it under QEMU
fn main() {}
