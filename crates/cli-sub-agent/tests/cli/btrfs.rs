//! Case 3 of the membership issue, on a real btrfs subvolume (loop-mounted; skipped with the
//! reason where `mkfs.btrfs` or a loop mount is not available).
//!
//! A file on a btrfs subvolume reports an anonymous device in `stat(2)` while `/proc/locks`
//! names the filesystem's own device, so a held lock there is missed by a `dev:ino` lookup.
//! Regression: a live agent holding its lock read `dead`, and reconcile wrote a synthetic
//! failure over a running session, while `csa run` said "busy" for the same process.

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::fcntl::{Flock, FlockArg};

use crate::harness::{actions, TestEnv};

/// A loop-mounted btrfs filesystem with a subvolume, unmounted on drop.
struct Subvolume {
    _tmp: tempfile::TempDir,
    mount: PathBuf,
    subvolume: PathBuf,
}

impl Subvolume {
    fn make() -> Result<Self, String> {
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let image = tmp.path().join("btrfs.img");
        let file = fs_err::File::create(&image).map_err(|e| e.to_string())?;
        file.set_len(256 << 20).map_err(|e| e.to_string())?;
        run("mkfs.btrfs", &["-q", "-f", &image.to_string_lossy()])?;
        let mount = tmp.path().join("mnt");
        fs_err::create_dir(&mount).map_err(|e| e.to_string())?;
        run(
            "mount",
            &[
                "-o",
                "loop",
                &image.to_string_lossy(),
                &mount.to_string_lossy(),
            ],
        )?;
        let subvolume = mount.join("sub");
        let made = Subvolume {
            _tmp: tmp,
            mount,
            subvolume: subvolume.clone(),
        };
        run(
            "btrfs",
            &["subvolume", "create", &subvolume.to_string_lossy()],
        )?;
        Ok(made)
    }
}

impl Drop for Subvolume {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn held_in_proc_locks(path: &Path) -> bool {
    let meta = fs_err::metadata(path).expect("stat");
    csa_process::HeldLocks::read()
        .expect("/proc/locks")
        .is_held(csa_process::FileId::of(&meta))
}

#[test]
fn a_held_lock_on_a_btrfs_subvolume_reads_alive() {
    let fs = match Subvolume::make() {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("skipped: no loop-mounted btrfs here ({why})");
            return;
        }
    };
    let env = TestEnv::new_in(&fs.subvolume);
    // An upstream-style session whose lock body names a pid that is gone: only the held flock
    // says it is alive.
    let s = env.session();
    s.write(
        "locks/codex.lock",
        r#"{"pid": 999999999, "pid_start_time_ticks": 1, "tool_name": "codex"}"#,
    );
    s.backdate();
    let lock_path = s.path("locks/codex.lock");
    let file = fs_err::File::open(&lock_path).expect("open").into_parts().0;
    let held = Flock::lock(file, FlockArg::LockExclusiveNonblock).expect("flock");
    // The precondition that made it fail: /proc/locks does not name this file's st_dev.
    if held_in_proc_locks(&lock_path) {
        eprintln!(
            "note: this kernel's /proc/locks names the subvolume's device; the test still checks the verdict"
        );
    }
    let alive = env.run(&["session", "is-alive", &s.id]);
    assert_eq!(alive.status.code(), Some(0), "{alive:?}");
    assert!(
        String::from_utf8_lossy(&alive.stdout).contains("flock is held"),
        "{alive:?}"
    );
    let (code, json) = env.reconcile_json(&[]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(actions(&json), [(s.id.clone(), "skipped_alive".to_owned())]);
    assert_eq!(s.phase(), "active");
    drop(held);
    // Released: now every signal says dead, and reconcile finalizes it.
    let (_, json) = env.reconcile_json(&[]);
    assert_eq!(
        actions(&json),
        [(s.id.clone(), "synthesized_failure".to_owned())]
    );
}

/// The same filesystem, with csa's own sessions: an agent whose supervisor was killed keeps
/// the directory claimed, and `is-alive` and `run` agree on it.
#[test]
fn a_csa_run_on_a_btrfs_subvolume_is_one_verdict_for_every_command() {
    let fs = match Subvolume::make() {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("skipped: no loop-mounted btrfs here ({why})");
            return;
        }
    };
    let env = TestEnv::new_in(&fs.subvolume);
    let mech = "process-session";
    let id = crate::membership::detach(&env, mech, &["sleep", "60"]);
    let supervisor = crate::membership::recorded(&env, &id, "supervisor");
    crate::membership::sigkill(supervisor);
    crate::membership::eventually("the supervisor is gone", || {
        !csa_process::probe(supervisor).is_running()
    });
    crate::harness::backdate_tree(&env.sessions_dir.join(&id), 120);
    let alive = crate::membership::csa(&env, mech, &["session", "is-alive", &id]);
    assert_eq!(alive.status.code(), Some(0), "{alive:?}");
    let busy = crate::membership::csa(&env, mech, &["run", "--", "true"]);
    assert_eq!(busy.status.code(), Some(75), "{busy:?}");
    let (_, json) = env.reconcile_json(&[]);
    assert_eq!(actions(&json), [(id.clone(), "skipped_alive".to_owned())]);
    let kill = crate::membership::csa(&env, mech, &["session", "kill", &id]);
    assert_eq!(kill.status.code(), Some(0), "{kill:?}");
}
