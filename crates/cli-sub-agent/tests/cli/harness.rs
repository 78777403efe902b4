//! The test environment: a temp state root and project directory, a cleared environment, and
//! helpers to lay out sessions in upstream's format and to run `csa`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use filetime::FileTime;

pub const TOOL: &str = "codex";

pub struct TestEnv {
    _tmp: tempfile::TempDir,
    pub state_root: PathBuf,
    pub project: PathBuf,
    pub sessions_dir: PathBuf,
    home: PathBuf,
}

impl TestEnv {
    pub fn new() -> Self {
        Self::new_in(&std::env::temp_dir())
    }

    /// A test environment whose state root and project live under `base` (a filesystem a test
    /// mounted, say).
    pub fn new_in(base: &Path) -> Self {
        let tmp = tempfile::tempdir_in(base).expect("tempdir");
        let state_root = tmp.path().join("state");
        let project = tmp.path().join("project");
        let home = tmp.path().join("home");
        for d in [&state_root, &project, &home] {
            fs_err::create_dir_all(d).expect("mkdir");
        }
        let key = fs_err::canonicalize(&project)
            .expect("canonicalize")
            .to_string_lossy()
            .trim_start_matches('/')
            .to_owned();
        let sessions_dir = state_root.join(key).join("sessions");
        fs_err::create_dir_all(&sessions_dir).expect("mkdir");
        // csa refuses directories others can write: keep the tests independent of the umask.
        for dir in sessions_dir
            .ancestors()
            .take_while(|d| d.starts_with(&state_root))
        {
            private(dir);
        }
        TestEnv {
            _tmp: tmp,
            state_root,
            project,
            sessions_dir,
            home,
        }
    }

    /// `csa --state-dir <root> ARGS…` with a cleared environment, run in the project directory.
    pub fn csa(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("csa"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            // The process backend under test (.ci/run runs the suite with each).
            .envs(std::env::var_os("CSA_PROCESS_BACKEND").map(|v| ("CSA_PROCESS_BACKEND", v)))
            .env("HOME", &self.home)
            .current_dir(&self.project)
            .arg("--state-dir")
            .arg(&self.state_root)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.csa(args).output().expect("run csa")
    }

    /// Runs `csa session reconcile ARGS… --format json` and returns (exit code, JSON).
    pub fn reconcile_json(&self, args: &[&str]) -> (i32, serde_json::Value) {
        let mut full = vec!["session", "reconcile", "--format", "json"];
        full.extend_from_slice(args);
        let out = self.run(&full);
        let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "bad JSON ({e}): stdout {:?} stderr {:?}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().expect("exit code"), json)
    }

    /// Every file and directory under the state root with its bytes (directories: empty), to
    /// check that a command changed nothing.
    pub fn tree_snapshot(&self) -> Vec<(String, Vec<u8>)> {
        fn walk(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
            for e in fs_err::read_dir(dir).expect("ls") {
                let p = e.expect("entry").path();
                if p.is_dir() {
                    out.push((p.display().to_string(), Vec::new()));
                    walk(&p, out);
                } else {
                    out.push((p.display().to_string(), fs_err::read(&p).expect("read")));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.state_root, &mut out);
        out.sort();
        out
    }

    /// Creates an Active session in upstream's format, files backdated 120 s.
    pub fn session(&self) -> Session {
        self.session_at(&self.sessions_dir, &self.project, &next_ulid())
    }

    /// The `sessions/` directory of the project of `dir` (created 0700, with the directories
    /// of its key), for sessions of other projects than [`TestEnv::project`].
    pub fn sessions_dir_of(&self, dir: &Path) -> PathBuf {
        let key = fs_err::canonicalize(dir)
            .expect("canonicalize")
            .to_string_lossy()
            .trim_start_matches('/')
            .to_owned();
        let sessions_dir = self.state_root.join(key).join("sessions");
        fs_err::create_dir_all(&sessions_dir).expect("mkdir");
        for dir in sessions_dir
            .ancestors()
            .take_while(|d| d.starts_with(&self.state_root))
        {
            private(dir);
        }
        sessions_dir
    }

    /// [`TestEnv::session`] with the id `id`, in `sessions_dir` (the project of `project`).
    pub fn session_at(&self, sessions_dir: &Path, project: &Path, id: &str) -> Session {
        let id = id.to_owned();
        let dir = sessions_dir.join(&id);
        fs_err::create_dir(&dir).expect("mkdir");
        private(&dir);
        let project = project.display();
        fs_err::write(
            dir.join("state.toml"),
            format!(
                r#"meta_session_id = "{id}"
description = "test"
project_path = "{project}"
created_at = "2026-11-21T06:33:50.574231058Z"
last_accessed = "2026-11-21T06:33:50.574231058Z"
csa_version = "0.1.1142"
phase = "active"
turn_count = 1
is_seed_candidate = false

[genealogy]
depth = 0

[tools.{TOOL}]
last_action_summary = "working"
last_exit_code = 0
updated_at = "2026-11-21T06:33:50.586026588Z"

[sandbox_info]
mode = "cgroup"
"#
            ),
        )
        .expect("write state");
        fs_err::write(
            dir.join("metadata.toml"),
            "tool = \"codex\"\ntool_locked = true\n",
        )
        .expect("write metadata");
        let session = Session { id, dir };
        session.backdate();
        session
    }
}

/// A ULID later than every one this test process made before, even within one millisecond
/// (plain `Ulid::new()` orders randomly within a millisecond, and tests rely on creation order).
/// Regression: `list_derives_status_newest_first…` failed when two sessions shared a millisecond.
fn next_ulid() -> String {
    static GENERATOR: std::sync::Mutex<Option<ulid::Generator>> = std::sync::Mutex::new(None);
    let mut generator = GENERATOR.lock().expect("generator");
    generator
        .get_or_insert_with(ulid::Generator::new)
        .generate()
        .expect("ULID space within one millisecond")
        .to_string()
}

pub struct Session {
    pub id: String,
    pub dir: PathBuf,
}

impl Session {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        fs_err::read(self.path(name)).expect("read")
    }

    pub fn write(&self, name: &str, body: impl AsRef<[u8]>) {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent).expect("mkdir");
        }
        fs_err::write(path, body).expect("write");
    }

    /// Sets every file's mtime 120 s into the past, so no file counts as fresh progress and no
    /// lock as recently written.
    pub fn backdate(&self) {
        backdate_tree(&self.dir, 120);
    }

    pub fn state(&self) -> toml::Table {
        toml::from_str(&String::from_utf8(self.read("state.toml")).expect("utf8")).expect("toml")
    }

    pub fn phase(&self) -> String {
        self.state()["phase"].as_str().expect("phase").to_owned()
    }

    pub fn result(&self) -> Option<toml::Table> {
        let path = self.path("result.toml");
        path.exists().then(|| {
            toml::from_str(&fs_err::read_to_string(path).expect("read")).expect("result toml")
        })
    }

    /// Writes daemon.pid naming `pid` with the given start ticks.
    pub fn daemon_pid(&self, pid: u32, ticks: u64) {
        self.write("daemon.pid", format!("{pid} {ticks}\n"));
        self.backdate();
    }
}

/// Makes `dir` 0700, as csa creates its directories (it refuses ones others can write).
fn private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
}

pub fn backdate_tree(dir: &Path, secs: u64) {
    let when = FileTime::from_system_time(SystemTime::now() - Duration::from_secs(secs));
    for entry in walk(dir) {
        filetime::set_symlink_file_times(&entry, when, when).expect("set mtime");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_owned()];
    if dir.is_dir() {
        for e in fs_err::read_dir(dir).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() && !p.is_symlink() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A real process standing in for an agent: `sleep`, killed (SIGKILL) and reaped on drop.
pub struct Agent {
    pub child: Child,
}

impl Agent {
    pub fn spawn() -> Self {
        Self::spawn_cmd(Command::new("sleep").arg("1000"))
    }

    pub fn spawn_cmd(cmd: &mut Command) -> Self {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn agent");
        Agent { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its start ticks, as upstream records them (read from `/proc` whatever backend csa
    /// uses: upstream's files always carry ticks on Linux).
    pub fn ticks(&self) -> u64 {
        csa_process::platform::stat(self.pid())
            .expect("start ticks")
            .start_ticks
    }

    /// The start ticks of an earlier process that had this pid: five seconds before this one
    /// started, so that a backend comparing whole seconds since boot (the portable backend)
    /// sees the reuse too.
    pub fn reused_ticks(&self) -> u64 {
        let hz = csa_process::clock_ticks_per_second().expect("CLK_TCK");
        self.ticks().saturating_sub(5 * hz)
    }

    /// SIGKILL and reap: the PID no longer names a process.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("reap");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The actions of a reconcile JSON report, as (session_id, action) pairs.
pub fn actions(json: &serde_json::Value) -> Vec<(String, String)> {
    json["sessions"]
        .as_array()
        .expect("sessions array")
        .iter()
        .map(|s| {
            (
                s["session_id"].as_str().expect("id").to_owned(),
                s["action"].as_str().expect("action").to_owned(),
            )
        })
        .collect()
}

/// Of `children` racing for one thing, waits for the `children.len() - 1` that give up on their
/// own (the losers) and returns their outputs and the one still running (the winner).
pub fn split_losers(
    children: Vec<std::process::Child>,
) -> (Vec<std::process::Output>, std::process::Child) {
    let wanted = children.len() - 1;
    let mut slots: Vec<Option<std::process::Child>> = children.into_iter().map(Some).collect();
    let mut losers = Vec::new();
    while losers.len() < wanted {
        for slot in slots.iter_mut() {
            if slot
                .as_mut()
                .is_some_and(|c| c.try_wait().expect("try_wait").is_some())
            {
                let child = slot.take().expect("child");
                losers.push(child.wait_with_output().expect("output"));
            }
        }
        std::thread::yield_now();
    }
    let winner = slots
        .into_iter()
        .flatten()
        .next()
        .expect("one still running");
    (losers, winner)
}

/// An exclusive flock on `path` held by this test process (another open file description than
/// any csa opens), as another program holding a session's `.reconcile.lock` would; released on
/// drop.
pub struct HeldLock {
    _flock: nix::fcntl::Flock<std::fs::File>,
}

impl HeldLock {
    pub fn take(path: &Path) -> Self {
        let file = fs_err::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .expect("open the lock file")
            .into_parts()
            .0;
        let flock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| e)
            .expect("take the lock");
        HeldLock { _flock: flock }
    }
}

/// Reads `child`'s stderr line by line until a line contains `needle`; returns the lines read
/// (the rest of stderr stays readable through the returned reader).
pub fn stderr_until(
    child: &mut Child,
    needle: &str,
) -> (Vec<String>, std::io::BufReader<std::process::ChildStderr>) {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(child.stderr.take().expect("piped stderr"));
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read stderr");
        assert!(n > 0, "stderr ended before {needle:?}: {lines:?}");
        let found = line.contains(needle);
        lines.push(line);
        if found {
            return (lines, reader);
        }
    }
}
