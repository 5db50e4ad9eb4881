//! Link the `kms` binary as a freestanding static PIE with our linker script;
//! `build.sh` turns the ELF into a UEFI PE.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = std::path::Path::new(&dir).join("link.ld");
    println!("cargo:rerun-if-changed=link.ld");
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static-pie",
        "-Wl,-Bsymbolic",
        "-Wl,-z,nocombreloc",
        "-Wl,--no-dynamic-linker",
        "-Wl,--build-id=none",
        "-Wl,--hash-style=gnu",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
}
