//! The CI driver: every target body over its committed seeds (`seeds/<target>/`) and
//! `FUZZ_SMOKE_MUTATIONS` (default 300) seeded mutations of each seed, capped at
//! `FUZZ_SMOKE_MAX_EXECS` (default 30 000) inputs per target. Deterministic: the same inputs on
//! every run. A panic fails the test and leaves the input in `artifacts/smoke/` for
//! `cargo fuzz run <target> <file>` or the `replay` test.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Instant;

use kms_fuzz::mutate::{Prng, fnv, mutate};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed folder of {target} ({}): {e}", dir.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_else(|e| panic!("seed {}: {e}", f.display())))
        .collect();
    assert!(
        !seeds.is_empty(),
        "no seeds for {target} in {}",
        dir.display()
    );
    seeds
}

fn save(target: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("artifacts")
        .join("smoke");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    let path = dir.join(format!("{target}-{:016x}", fnv(input)));
    std::fs::write(&path, input).expect("write artifact");
    path
}

fn smoke(target: &str) {
    let body = target_body(target);
    let seeds = seeds(target);
    let per_seed = env_usize("FUZZ_SMOKE_MUTATIONS", 300);
    let cap = env_usize("FUZZ_SMOKE_MAX_EXECS", 30_000);
    let start = Instant::now();
    let execs = std::cell::Cell::new(0usize);
    let run = |input: &[u8]| {
        execs.set(execs.get() + 1);
        if catch_unwind(AssertUnwindSafe(|| body(input))).is_err() {
            let path = save(target, input);
            panic!("{target}: panic on input saved to {}", path.display());
        }
    };
    for s in &seeds {
        run(s);
    }
    'outer: for (i, s) in seeds.iter().enumerate() {
        let mut rng =
            Prng::new(fnv(target.as_bytes()) ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let budget = per_seed.min(cap / seeds.len());
        for n in 0..budget {
            // Three in four inputs are one mutation call away from the seed, the rest up to four.
            let mut input = s.clone();
            let other = &seeds[rng.below(seeds.len())];
            let rounds = if n % 4 == 3 { 2 + rng.below(3) } else { 1 };
            for _ in 0..rounds {
                mutate(&mut rng, &mut input, other);
            }
            run(&input);
            if execs.get() >= cap {
                break 'outer;
            }
        }
    }
    let execs = execs.get();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fuzz-smoke {target:<18} seeds {:>3} execs {execs:>6} in {secs:>6.2} s = {:>8.0} exec/s",
        seeds.len(),
        execs as f64 / secs.max(1e-9)
    );
}

macro_rules! smoke_tests {
    ($($t:ident),* $(,)?) => {
        $(#[test] fn $t() { smoke(stringify!($t)); })*

        /// Every target has a test here.
        #[test]
        fn all_targets_covered() {
            let mut ours = vec![$(stringify!($t)),*];
            let mut lib: Vec<&str> = kms_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
            ours.sort();
            lib.sort();
            assert_eq!(ours, lib);
        }
    };
}

smoke_tests!(
    kmip_json,
    kmip_binary,
    certificate_request,
    http_request,
    server_connection,
    resp_reply,
    redis_url,
    redis_seal,
    snp_report,
    ratls_quote,
    guest_msg,
    ovmf_metadata,
    tdx_quote,
    bootstrap_json,
    bootstrap_x509,
    snp_emu_frame,
    boot_cmdline,
    boot_tables,
);

fn target_body(target: &str) -> fn(&[u8]) {
    kms_fuzz::TARGETS
        .iter()
        .find(|(n, _)| *n == target)
        .unwrap_or_else(|| {
            let known: Vec<&str> = kms_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
            panic!(
                "unknown fuzz target {target:?} (known: {})",
                known.join(", ")
            )
        })
        .1
}

/// Replays the files named by `FUZZ_REPLAY` (`target:path,target:path`): reproduces a crash
/// found by libFuzzer or the smoke driver without the libFuzzer runtime. Without
/// `FUZZ_REPLAY` it replays the committed seed corpus of every target instead, so it never
/// passes without running anything: a target without a seed folder, an empty folder or a
/// folder no target reads fails the test, naming it; so does a malformed item, an unknown
/// target or a missing file in `FUZZ_REPLAY`.
#[test]
fn replay() {
    let list = match std::env::var("FUZZ_REPLAY") {
        Ok(list) => list,
        Err(std::env::VarError::NotPresent) => {
            replay_seed_corpus();
            return;
        }
        Err(e) => panic!("FUZZ_REPLAY: {e}"),
    };
    let items: Vec<&str> = list.split(',').filter(|s| !s.trim().is_empty()).collect();
    assert!(
        !items.is_empty(),
        "FUZZ_REPLAY is set but names no input (expected target:path[,target:path...])"
    );
    for item in items {
        let (target, path) = item
            .split_once(':')
            .unwrap_or_else(|| panic!("FUZZ_REPLAY item {item:?} is not target:path"));
        let body = target_body(target);
        let input = std::fs::read(path)
            .unwrap_or_else(|e| panic!("FUZZ_REPLAY input {path} (target {target}): {e}"));
        body(&input);
        println!("replayed {target}: {path} ({} bytes)", input.len());
    }
}

/// Every target's committed seeds, once each; the seed folders and the targets must match.
fn replay_seed_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let folders: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed corpus {} is missing: {e}", dir.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let targets: Vec<&str> = kms_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
    let missing: Vec<&&str> = targets
        .iter()
        .filter(|t| !folders.iter().any(|f| f == *t))
        .collect();
    assert!(
        missing.is_empty(),
        "no seed folder in {} for the targets {missing:?}",
        dir.display()
    );
    let stray: Vec<&String> = folders
        .iter()
        .filter(|f| !targets.contains(&f.as_str()))
        .collect();
    assert!(
        stray.is_empty(),
        "seed folders {stray:?} in {} belong to no target",
        dir.display()
    );
    for (target, body) in kms_fuzz::TARGETS {
        let inputs = seeds(target);
        for input in &inputs {
            body(input);
        }
        println!("replayed {target}: {} seeds", inputs.len());
    }
}

/// The seeds still exercise the success paths (a format change would otherwise leave the
/// fuzzer mutating inputs that fail at the first check).
#[test]
fn seeds_reach_success_paths() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let read = |p: &str| std::fs::read(dir.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let lim = kms::kmip::json::Limits::default();
    for s in seeds("kmip_json") {
        assert!(
            kms::kmip::json::from_slice(&s, &lim).is_ok(),
            "{}",
            String::from_utf8_lossy(&s)
        );
    }
    for name in ["health", "create", "batch", "grant", "pipelined"] {
        let s = read(&format!("http_request/{name}"));
        assert!(
            matches!(
                kms::http::parse_request(&s, &kms::http::Limits::default()),
                Ok(Some(_))
            ),
            "{name}"
        );
    }
    for p in ["snp_report/milan", "snp_report/emulator_v3"] {
        assert!(
            attest::snp::report::AttestationReport::parse(&read(p)).is_ok(),
            "{p}"
        );
    }
    for s in seeds("ratls_quote") {
        assert!(attest::ratls::parse_snp_quote(&s).is_ok());
    }
    let key = attest::snp::guest_msg::Vmpck::new(kms_fuzz::FUZZ_VMPCK);
    for p in [
        "guest_msg/report_req",
        "guest_msg/key_req",
        "guest_msg/report_rsp",
    ] {
        assert!(attest::snp::guest_msg::open(&key, &read(p)).is_ok(), "{p}");
    }
    assert!(attest::tdx::Quote::parse(&read("tdx_quote/quote_v4")).is_ok());
    for p in ["ovmf_metadata/amdsev_kernel", "ovmf_metadata/ovmfx64"] {
        assert!(
            attest::measure::snp::Ovmf::parse(&read(p)[2..]).is_ok(),
            "{p}"
        );
    }
    for p in [
        "bootstrap_x509/milan_chain.pem",
        "bootstrap_x509/emu_chain.pem",
    ] {
        let pem = String::from_utf8(read(p)).expect("pem");
        assert!(kms::bootstrap::x509::parse_pem_chain(&pem).is_ok(), "{p}");
    }
    for s in seeds("boot_cmdline") {
        assert!(bootparams::cmdline::parse(std::str::from_utf8(&s).expect("utf8")).is_ok());
    }
    for s in seeds("redis_url") {
        assert!(kms_redis::url::RedisUrl::parse(std::str::from_utf8(&s).expect("utf8")).is_ok());
    }
}
