//! `kms-server` binary: parse the options and run [`kms_server::app::run`].
#![forbid(unsafe_code)]

use clap::Parser;

/// mimalloc: the request path allocates many small buffers (JSON TTLV items, records, TLS
/// records); glibc's malloc/free were ~15% of an Encrypt's CPU (issue 15).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    if std::env::args_os().any(|a| a == "--bootstrap") {
        let args = kms_server::bootstrap::BootstrapArgs::parse();
        return match kms_server::bootstrap::run(args) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kms-server: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let args = kms_server::app::ServerArgs::parse();
    match kms_server::app::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kms-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
