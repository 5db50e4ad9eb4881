//! Child processes of tests: free ports, workspace binaries, kill-by-PID guards, ready lines.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Lines};
use std::net::TcpListener;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("bind an ephemeral port on 127.0.0.1: {e}"))
}

/// A workspace binary next to the running test executable (`target/<profile>/<name>`); panics
/// with the build command when it is missing.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("no target directory above {}", exe.display()));
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} is missing: build it first with `cargo build --workspace --bins`",
        bin.display()
    );
    bin
}

/// A child process, killed (by PID) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard(Child);

impl ChildGuard {
    /// Guard `child`.
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard(child)
    }

    /// Spawn `cmd`; panics naming `what` when it cannot start.
    pub fn spawn(cmd: &mut Command, what: &str) -> ChildGuard {
        ChildGuard(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("start {what} ({cmd:?}): {e}")),
        )
    }

    /// The lines of the child's piped stdout (taken: call once).
    pub fn stdout_lines(&mut self) -> Lines<BufReader<ChildStdout>> {
        let stdout =
            self.0.stdout.take().unwrap_or_else(|| {
                panic!("stdout of {} is not piped or already taken", self.0.id())
            });
        BufReader::new(stdout).lines()
    }

    /// Kill the child by PID (SIGKILL) and reap it; nothing when it has already exited.
    fn kill_and_reap(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// Read `lines` until one starts with `prefix`; returns the rest of that line, trimmed. Panics
/// naming `what` if the stream ends first (the process exited before it was ready).
pub fn wait_line(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    prefix: &str,
    what: &str,
) -> String {
    for line in lines {
        let line = line.unwrap_or_else(|e| panic!("read the stdout of {what}: {e}"));
        if let Some(rest) = line.strip_prefix(prefix) {
            return rest.trim().to_owned();
        }
    }
    panic!("{what} exited before printing {prefix:?}");
}

/// Keep reading `lines` in a background thread, so that the child never blocks on a full pipe.
pub fn drain_lines<R: BufRead + Send + 'static>(lines: Lines<R>) {
    std::thread::spawn(move || lines.for_each(drop));
}

/// `snp-emu serve --socket …` (the emulated AMD secure processor), killed by PID on drop.
pub struct SnpEmu {
    _guard: ChildGuard,
    /// The unix socket it serves on.
    pub socket: PathBuf,
    /// The launch measurement it printed (hex).
    pub measurement: String,
}

impl SnpEmu {
    /// Start `bin serve --socket <socket> <args…>` and wait for its `measurement` and `listening`
    /// lines; the rest of its stdout is drained, its stderr (a log line per command) discarded.
    pub fn serve<I, S>(bin: &Path, socket: PathBuf, args: I) -> SnpEmu
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut guard = ChildGuard::spawn(
            Command::new(bin)
                .arg("serve")
                .arg("--socket")
                .arg(&socket)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
            "snp-emu",
        );
        let mut lines = guard.stdout_lines();
        let measurement = wait_line(&mut lines, "measurement ", "snp-emu");
        wait_line(&mut lines, "listening", "snp-emu");
        drain_lines(lines);
        SnpEmu {
            _guard: guard,
            socket,
            measurement,
        }
    }
}

/// A Python venv under `dir` with `requirement` (e.g. `pykmip==0.11.0`) installed from PyPI; returns
/// the venv's directory (`bin/python`, `bin/<tool>`). Panics naming `override_hint` (how to use an
/// installed copy instead) when the venv or the install fails.
pub fn pip_venv(dir: &Path, requirement: &str, override_hint: &str) -> PathBuf {
    let venv = dir.join("venv");
    let ok = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "cannot create a Python venv for {requirement} ({override_hint})"
    );
    let out = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            requirement,
        ])
        .output()
        .unwrap_or_else(|e| panic!("run pip: {e}"));
    assert!(
        out.status.success(),
        "pip install {requirement} failed (is PyPI reachable? or {override_hint}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    venv
}
