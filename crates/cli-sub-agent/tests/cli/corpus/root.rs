//! A state root holding one case per spec, next to healthy sessions.

use super::*;

/// How a case's session behaves, given which file is broken and whether it still parses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Class {
    /// state.toml does not parse: nothing may touch the session.
    Blocked,
    /// Active, result.toml does not parse: left alone.
    BadResult,
    /// Ended and resumable (the run.toml cases).
    Ended,
    /// Active with a readable state: alive or dead by liveness, finalized when dead.
    Open,
}

pub(super) struct Case {
    pub(super) spec: Spec,
    pub(super) id: String,
    /// The directory `--cd` names for this case.
    pub(super) project_dir: PathBuf,
    pub(super) sessions_dir: PathBuf,
    pub(super) dir: PathBuf,
    /// The broken file.
    pub(super) path: PathBuf,
    /// The valid file a `LinkElsewhere` points to, and its bytes.
    pub(super) outside: Option<(PathBuf, Vec<u8>)>,
    /// Whether the file (through a symlink, as root) still parses for csa.
    pub(super) valid: bool,
    /// The result.toml of the session is present and valid.
    pub(super) valid_result: bool,
    /// The broken daemon.pid or lock body names a pid some process may hold right now (a
    /// truncated `999999999` is `999`): liveness may change between two commands.
    pub(super) volatile: bool,
}

impl Case {
    pub(super) fn class(&self) -> Class {
        match self.spec.target {
            Target::State if !self.valid => Class::Blocked,
            Target::Result if !self.valid => Class::BadResult,
            Target::Run => Class::Ended,
            _ => Class::Open,
        }
    }

    /// Whether a diagnostic must name the broken file.
    pub(super) fn must_name(&self) -> bool {
        !self.valid && self.spec.target.named_when_broken()
    }

    pub(super) fn name(&self) -> String {
        format!(
            "{} {} ({})",
            self.spec.target.label(),
            self.spec.form,
            self.id
        )
    }

    pub(super) fn path_str(&self) -> String {
        self.path.display().to_string()
    }
}

pub(super) struct Corpus {
    pub(super) _tmp: tempfile::TempDir,
    pub(super) root: PathBuf,
    pub(super) home: PathBuf,
    pub(super) main_dir: PathBuf,
    pub(super) main_sessions: PathBuf,
    pub(super) cases: Vec<Case>,
    pub(super) neighbour_dead: String,
    pub(super) neighbour_old: String,
}

impl Corpus {
    /// A state root with one case per spec, plus a dead Active and an old retired healthy
    /// session in the main project.
    pub(super) fn build(specs: &[Spec], t: &Times) -> Self {
        let start = Instant::now();
        let built = Self::build_inner(specs, t);
        println!(
            "corpus: built {} cases in {:.1}s",
            specs.len(),
            start.elapsed().as_secs_f64()
        );
        built
    }

    pub(super) fn build_inner(specs: &[Spec], t: &Times) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path();
        let root = base.join("state");
        let home = base.join("home");
        let main_dir = base.join("project");
        for d in [
            &root,
            &home,
            &main_dir,
            &base.join("elsewhere"),
            &base.join("p"),
        ] {
            fs_err::create_dir_all(d).expect("mkdir");
        }
        let main_sessions = sessions_dir_of(&root, &main_dir);
        fs_err::create_dir_all(&main_sessions).expect("mkdir");
        let neighbour_dead = next_ulid();
        write_session(
            &main_sessions.join(&neighbour_dead),
            &neighbour_dead,
            Phase::Active,
            t,
        );
        let neighbour_old = next_ulid();
        write_session(
            &main_sessions.join(&neighbour_old),
            &neighbour_old,
            Phase::Old,
            t,
        );
        let mut cases = Vec::with_capacity(specs.len());
        for (n, spec) in specs.iter().enumerate() {
            cases.push(build_case(
                base,
                &root,
                &main_dir,
                &main_sessions,
                n,
                *spec,
                t,
            ));
        }
        backdate_tree(&root, 3600);
        backdate_tree(&base.join("elsewhere"), 3600);
        for case in &cases {
            if case.spec.target == Target::Snapshot {
                freshen_snapshot(case);
            }
        }
        Corpus {
            _tmp: tmp,
            root,
            home,
            main_dir,
            main_sessions,
            cases,
            neighbour_dead,
            neighbour_old,
        }
    }

    /// Every outside file a symlink points to, as it must still be.
    pub(super) fn outside_intact(&self, findings: &Findings, when: &str) {
        for case in &self.cases {
            if let Some((path, bytes)) = &case.outside {
                if fs_err::read(path).ok().as_ref() != Some(bytes) {
                    findings.push(format!(
                        "{when}: {}: the file its symlink points to, {}, was changed",
                        case.name(),
                        path.display()
                    ));
                }
            }
        }
    }
}

pub(super) fn sessions_dir_of(root: &Path, project_dir: &Path) -> PathBuf {
    let key = fs_err::canonicalize(project_dir)
        .expect("canonicalize")
        .to_string_lossy()
        .trim_start_matches('/')
        .to_owned();
    root.join(key).join("sessions")
}

pub(super) fn build_case(
    base: &Path,
    root: &Path,
    main_dir: &Path,
    main_sessions: &Path,
    n: usize,
    spec: Spec,
    t: &Times,
) -> Case {
    let id = next_ulid();
    let (project_dir, sessions_dir) = if spec.target.project_level() {
        let project_dir = base.join("p").join(n.to_string());
        fs_err::create_dir_all(&project_dir).expect("mkdir project");
        let sessions = sessions_dir_of(root, &project_dir);
        (project_dir, sessions)
    } else {
        (main_dir.to_owned(), main_sessions.to_owned())
    };
    let dir = sessions_dir.join(&id);
    let phase = if spec.target == Target::Run {
        Phase::Resumable
    } else {
        Phase::Active
    };
    write_session(&dir, &id, phase, t);
    let rel = spec.target.rel(&id);
    let path = if spec.target.project_level() {
        sessions_dir.join(&rel)
    } else {
        dir.join(&rel)
    };
    fs_err::create_dir_all(path.parent().expect("parent")).expect("mkdir parent");
    let _ = fs_err::remove_file(&path);
    let valid_body = spec.target.valid_body(&id, t);
    let mut outside = None;
    let content = spec.form.bytes(spec.target, &valid_body);
    match spec.form {
        _ if content.is_some() => {
            fs_err::write(&path, content.as_deref().expect("content")).expect("write case");
            if spec.form == Form::NoPermissions {
                fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o000))
                    .expect("chmod");
            }
        }
        Form::Huge => {
            fs_err::write(&path, &valid_body).expect("write");
            fs_err::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open")
                .set_len(HUGE)
                .expect("sparse");
        }
        Form::Directory => fs_err::create_dir(&path).expect("mkdir"),
        Form::LinkElsewhere => {
            let target = base.join("elsewhere").join(format!(
                "{n}-{}",
                path.file_name().expect("name").to_string_lossy()
            ));
            fs_err::write(&target, &valid_body).expect("write outside");
            std::os::unix::fs::symlink(&target, &path).expect("symlink");
            outside = Some((target, valid_body.clone()));
        }
        Form::LinkDevZero => std::os::unix::fs::symlink("/dev/zero", &path).expect("symlink"),
        Form::LinkLoop => std::os::unix::fs::symlink(&path, &path).expect("symlink"),
        Form::Fifo => nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo"),
        _ => unreachable!("content forms are written above"),
    }
    let root_reads_anything = nix::unistd::geteuid().is_root();
    let valid = match spec.form {
        Form::LinkElsewhere => true,
        Form::NoPermissions => root_reads_anything,
        _ => content
            .as_deref()
            .is_some_and(|bytes| spec.target.parses(bytes)),
    };
    let valid_result = match spec.target {
        Target::Result => valid,
        Target::Run => true,
        _ => false,
    };
    Case {
        spec,
        id,
        project_dir,
        sessions_dir,
        dir,
        path,
        outside,
        valid,
        valid_result,
        volatile: content
            .as_deref()
            .is_some_and(|bytes| names_possible_pid(spec.target, bytes)),
    }
}

/// `.liveness.snapshot` is only read while fresh: give it (or what it points to) a modification
/// time in the future, which csa counts as fresh, for the whole run.
pub(super) fn freshen_snapshot(case: &Case) {
    if matches!(case.spec.form, Form::LinkDevZero | Form::LinkLoop) {
        return;
    }
    let future =
        filetime::FileTime::from_system_time(SystemTime::now() + Duration::from_secs(3600));
    // By path (utimensat): filetime's other setters open the file, which blocks on a FIFO.
    let path = case
        .outside
        .as_ref()
        .map_or(&case.path, |(target, _)| target);
    filetime::set_symlink_file_times(path, future, future).expect("freshen snapshot");
}

/// Monotonic ULIDs (see harness).
pub(super) fn next_ulid() -> String {
    static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);
    let mut generator = GENERATOR.lock().expect("generator");
    generator
        .get_or_insert_with(ulid::Generator::new)
        .generate()
        .expect("ULID space")
        .to_string()
}

/// Whether `bytes`, as daemon.pid or a lock body, names a pid a process may have now: at most
/// 2^22, the largest `pid_max`.
fn names_possible_pid(target: Target, bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let pid = match target {
        Target::DaemonPid => DaemonPid::parse(&text).map(|d| d.pid),
        Target::Lock => serde_json::from_str::<LockBody>(&text).ok().map(|l| l.pid),
        _ => None,
    };
    pid.is_some_and(|pid| pid <= 1 << 22)
}
