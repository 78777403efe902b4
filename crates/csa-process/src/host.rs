//! Identity of the machine, boot and PID namespace this process runs in, as csa records it in
//! the lock bodies of the sessions it starts.

use crate::platform;

/// Where a process runs: compared against the identity recorded in a session's lock body to tell
/// a local owner from a foreign one (another machine or PID namespace, whose PIDs mean nothing
/// here) and a live boot from a previous one (whose processes all died in the reboot).
///
/// Each field is `None` when it cannot be read; an unknown field never matches nor mismatches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostIdentity {
    /// `/proc/sys/kernel/random/boot_id`: a UUID that changes at every boot.
    pub boot_id: Option<String>,
    /// `/etc/machine-id` (or `/var/lib/dbus/machine-id`): 32 hex digits, stable per installation.
    pub machine_id: Option<String>,
    /// The host name, from `gethostname(2)`.
    pub hostname: Option<String>,
    /// The inode of `/proc/self/ns/pid`: this process's PID namespace.
    pub pid_ns: Option<u64>,
}

impl HostIdentity {
    /// Reads the identity of the running process. Four small reads; call once per command.
    pub fn current() -> Self {
        HostIdentity {
            boot_id: platform::boot_id().ok().filter(|s| !s.is_empty()),
            machine_id: ["/etc/machine-id", "/var/lib/dbus/machine-id"]
                .iter()
                .find_map(|p| fs_err::read_to_string(p).ok())
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
            hostname: nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .filter(|s| !s.is_empty()),
            pid_ns: platform::pid_namespace().ok(),
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn reads_boot_id_and_namespace() {
        let id = super::HostIdentity::current();
        assert_eq!(id.boot_id.as_deref().map(str::len), Some(36));
        assert!(id.pid_ns.is_some());
        assert!(id.hostname.is_some());
    }
}
