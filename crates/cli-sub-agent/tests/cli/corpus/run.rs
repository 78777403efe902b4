//! Running the real `csa` under a data-size limit and a timeout, and collecting findings.

use super::*;

#[derive(Default)]
pub(super) struct Findings(Mutex<Vec<String>>);

impl Findings {
    pub(super) fn push(&self, finding: String) {
        self.0.lock().expect("findings").push(finding);
    }

    pub(super) fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("findings"))
    }
}

pub(super) struct Ran {
    pub(super) args: String,
    pub(super) timeout: Duration,
    pub(super) code: Option<i32>,
    pub(super) signal: Option<i32>,
    pub(super) stdout: Vec<u8>,
    pub(super) stderr: String,
}

impl Ran {
    pub(super) fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub(super) fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.stdout).ok()
    }

    /// Whether stdout or stderr mentions `text`.
    pub(super) fn mentions(&self, text: &str) -> bool {
        self.out().contains(text) || self.stderr.contains(text)
    }

    /// The exit code, or why there is none worth judging: a panic, a hang, an abort.
    pub(super) fn sane(&self) -> Result<i32, String> {
        let code = match (self.code, self.signal) {
            (_, Some(9)) => return Err(format!("hung: killed after {:?}", self.timeout)),
            (_, Some(sig)) => {
                return Err(format!(
                    "killed by signal {sig} (6 is an abort, such as an allocation over the {} MiB data limit)",
                    MEMORY_LIMIT / MIB
                ))
            }
            (Some(code), None) => code,
            (None, None) => return Err("no exit status".into()),
        };
        if code == 101 || self.stderr.contains("panicked") {
            return Err(format!("panicked (exit {code})"));
        }
        Ok(code)
    }

    pub(super) fn describe(&self) -> String {
        let mut out = self.out();
        out.truncate(600);
        let mut err = self.stderr.clone();
        err.truncate(600);
        format!(
            "`csa {}` exited {:?} (signal {:?})\n    stdout: {out:?}\n    stderr: {err:?}",
            self.args, self.code, self.signal
        )
    }
}

pub(super) struct Csa {
    pub(super) bin: PathBuf,
    pub(super) prlimit: bool,
    pub(super) runs: AtomicUsize,
}

impl Csa {
    pub(super) fn new() -> Self {
        let prlimit = Command::new("prlimit")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !prlimit {
            eprintln!(
                "corpus: prlimit not found: csa runs without a data-size limit, so memory is not bounded by this test"
            );
        }
        Csa {
            bin: assert_cmd::cargo::cargo_bin!("csa").to_owned(),
            prlimit,
            runs: AtomicUsize::new(0),
        }
    }

    pub(super) fn command(&self) -> Command {
        if self.prlimit {
            let mut cmd = Command::new("prlimit");
            cmd.arg(format!("--data={MEMORY_LIMIT}")).arg(&self.bin);
            cmd
        } else {
            Command::new(&self.bin)
        }
    }

    /// Runs a per-session command.
    pub(super) fn run(&self, fx: &Corpus, cwd: &Path, args: &[&str]) -> Ran {
        self.run_within(fx, cwd, args, TIMEOUT)
    }

    /// Runs a command over the whole root.
    pub(super) fn run_root(&self, fx: &Corpus, args: &[&str]) -> Ran {
        let start = Instant::now();
        let ran = self.run_within(fx, &fx.main_dir, args, ROOT_TIMEOUT);
        println!(
            "corpus: `csa {}` over {} cases took {:.1}s",
            ran.args,
            fx.cases.len(),
            start.elapsed().as_secs_f64()
        );
        ran
    }

    pub(super) fn run_within(
        &self,
        fx: &Corpus,
        cwd: &Path,
        args: &[&str],
        timeout: Duration,
    ) -> Ran {
        self.runs.fetch_add(1, Ordering::Relaxed);
        let mut cmd = self.command();
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            // The process backend under test (.ci/run runs the suite with each).
            .envs(std::env::var_os("CSA_PROCESS_BACKEND").map(|v| ("CSA_PROCESS_BACKEND", v)))
            .env("HOME", &fx.home)
            .current_dir(cwd)
            .arg("--state-dir")
            .arg(&fx.root)
            .args(args);
        let out = assert_cmd::Command::from_std(cmd)
            .timeout(timeout)
            .output()
            .expect("spawn csa");
        use std::os::unix::process::ExitStatusExt;
        Ran {
            args: args.join(" "),
            timeout,
            code: out.status.code(),
            signal: out.status.signal(),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Runs `f` on every item, on [`WORKERS`] threads.
pub(super) fn par_each<T: Sync>(items: &[T], f: impl Fn(&T) + Sync) {
    let next = AtomicUsize::new(0);
    thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                f(item);
            });
        }
    });
}
