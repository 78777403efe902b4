//! Identity of the machine, boot and PID namespace this process runs in, as csa records it in
//! the lock bodies (and `membership.toml`) of the sessions it starts, and the rule that tells
//! an owner of another boot.

use std::time::Duration;

use crate::backend;

/// A recorded boot time this much earlier than the current one is another boot's (portable
/// backend, which knows the boot only by its time): 1 hour. The boot time is derived from the
/// wall clock, so setting the clock moves it; the slack is wide so that a clock set while a
/// session runs is not taken for a reboot (which would ignore its records: the dangerous way
/// to fail). Failing the other way, a reboot less than an hour after the previous boot started
/// leaves that boot's records to the pid and start-time checks, which are exact for every
/// process that did not get the same pid and start time again.
pub const BOOT_TIME_SLACK: Duration = Duration::from_secs(3600);

/// Where a process runs: compared against the identity recorded in a session's lock body to tell
/// a local owner from a foreign one (another machine or PID namespace, whose PIDs mean nothing
/// here) and a live boot from a previous one (whose processes all died in the reboot).
///
/// Each field is `None` when it cannot be read; an unknown field never matches nor mismatches.
/// Which fields are known depends on the backend ([`crate::backend`]): procfs reads the boot
/// id and the PID namespace, the portable backend the boot time. A boot id is compared only
/// with a boot id, a boot time only with a boot time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostIdentity {
    /// `/proc/sys/kernel/random/boot_id`: a UUID that changes at every boot (procfs backend).
    pub boot_id: Option<String>,
    /// When this boot started, seconds since the Unix epoch (portable backend).
    pub boot_time: Option<u64>,
    /// `/etc/machine-id` (or `/var/lib/dbus/machine-id`): 32 hex digits, stable per installation.
    pub machine_id: Option<String>,
    /// The host name, from `gethostname(2)`.
    pub hostname: Option<String>,
    /// The inode of `/proc/self/ns/pid`: this process's PID namespace (procfs backend).
    pub pid_ns: Option<u64>,
}

impl HostIdentity {
    /// Reads the identity of the running process. A few small reads; call once per command.
    pub fn current() -> Self {
        HostIdentity {
            boot_id: backend::boot_id(),
            boot_time: backend::boot_time(),
            machine_id: ["/etc/machine-id", "/var/lib/dbus/machine-id"]
                .iter()
                .find_map(|p| fs_err::read_to_string(p).ok())
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
            hostname: nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .filter(|s| !s.is_empty()),
            pid_ns: backend::pid_namespace(),
        }
    }

    /// Why a record written with boot id `boot_id` and boot time `boot_time` belongs to
    /// another boot than this one, if it does: boot ids that differ, or a recorded boot time
    /// more than [`BOOT_TIME_SLACK`] before this boot's. `None` (same boot, or unknown: the
    /// fields this process knows were not recorded) otherwise.
    pub fn other_boot(&self, boot_id: Option<&str>, boot_time: Option<u64>) -> Option<String> {
        if let (Some(ours), Some(theirs)) = (self.boot_id.as_deref(), boot_id) {
            return (ours != theirs).then(|| format!("boot {theirs}"));
        }
        if let (Some(ours), Some(theirs)) = (self.boot_time, boot_time) {
            let later = ours.saturating_sub(theirs);
            return (later > BOOT_TIME_SLACK.as_secs())
                .then(|| format!("the boot that started at {theirs} s (Unix time)"));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_backends_boot_identity() {
        let id = HostIdentity::current();
        assert!(id.hostname.is_some());
        match backend::current() {
            backend::Backend::Procfs => {
                assert_eq!(id.boot_id.as_deref().map(str::len), Some(36));
                assert!(id.pid_ns.is_some());
                assert_eq!(id.boot_time, None);
            }
            backend::Backend::Portable => {
                assert_eq!(id.boot_id, None);
                assert!(id.boot_time.is_some());
            }
        }
    }

    #[test]
    fn a_boot_is_compared_like_with_like() {
        let procfs = HostIdentity {
            boot_id: Some("a".into()),
            ..HostIdentity::default()
        };
        let portable = HostIdentity {
            boot_time: Some(10_000),
            ..HostIdentity::default()
        };
        assert_eq!(procfs.other_boot(Some("a"), None), None);
        assert!(procfs.other_boot(Some("b"), None).is_some());
        // A boot id against a boot time: unknown, never another boot.
        assert_eq!(procfs.other_boot(None, Some(1)), None);
        assert_eq!(portable.other_boot(Some("b"), None), None);
        assert_eq!(portable.other_boot(None, Some(10_000 - 3600)), None);
        assert_eq!(
            portable.other_boot(None, Some(20_000)),
            None,
            "clock set back"
        );
        assert!(portable.other_boot(None, Some(10_000 - 3601)).is_some());
    }
}
