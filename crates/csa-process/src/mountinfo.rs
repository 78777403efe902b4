//! The mount table of this process, from `/proc/self/mountinfo` (proc(5)): which device numbers
//! name a mounted filesystem (so that `/proc/locks`, which prints a superblock's device, can be
//! trusted for a file whose `st_dev` is one of them), and where the cgroup v2 hierarchy is
//! mounted.
//!
//! Each line reads `ID PARENT MAJOR:MINOR ROOT MOUNT-POINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE
//! SUPER-OPTIONS`; paths escape space, tab, newline and backslash as `\040`, `\011`, `\012` and
//! `\134`.

use std::collections::HashSet;
use std::io;
use std::path::PathBuf;

use crate::platform;

/// One mounted filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Device major number (field 3).
    pub major: u64,
    /// Device minor number (field 3).
    pub minor: u64,
    /// Where it is mounted (field 5, unescaped).
    pub mount_point: PathBuf,
    /// Its filesystem type (the first field after `-`).
    pub fstype: String,
}

/// The parsed mount table.
#[derive(Debug, Clone, Default)]
pub struct MountInfo {
    mounts: Vec<Mount>,
    devices: HashSet<(u64, u64)>,
}

impl MountInfo {
    /// Reads `/proc/self/mountinfo`.
    ///
    /// # Errors
    /// Any I/O error of the read; `Unsupported` without `/proc`.
    pub fn read() -> io::Result<Self> {
        Ok(Self::parse(&platform::mountinfo()?))
    }

    /// Parses the text of a mountinfo file; lines that do not parse are skipped.
    pub fn parse(text: &str) -> Self {
        let mounts: Vec<Mount> = text.lines().filter_map(parse_line).collect();
        let devices = mounts.iter().map(|m| (m.major, m.minor)).collect();
        MountInfo { mounts, devices }
    }

    /// Whether `major:minor` is the device of some mount. A file whose `st_dev` is not (a btrfs
    /// subvolume's anonymous device, say) is locked under another device number in
    /// `/proc/locks`.
    pub fn has_device(&self, major: u64, minor: u64) -> bool {
        self.devices.contains(&(major, minor))
    }

    /// The mount point of the cgroup v2 hierarchy (`/sys/fs/cgroup` on a unified system,
    /// `/sys/fs/cgroup/unified` on a hybrid one), if mounted.
    pub fn cgroup2_mount(&self) -> Option<&PathBuf> {
        self.mounts
            .iter()
            .find(|m| m.fstype == "cgroup2")
            .map(|m| &m.mount_point)
    }

    /// Every mount, in the file's order.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }
}

fn parse_line(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let mut fields = before.split(' ');
    let _id = fields.next()?;
    let _parent = fields.next()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let _root = fields.next()?;
    let mount_point = unescape(fields.next()?);
    let fstype = after.split(' ').next()?.to_owned();
    Some(Mount {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        mount_point: PathBuf::from(mount_point),
        fstype,
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, …).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match octal {
            Some(b) => {
                out.push(b);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
46 27 0:40 / /tmp/bt\\040mnt rw,relatime - btrfs /dev/loop0 rw,subvolid=5,subvol=/
47 27 0:41 / /x rw shared:1 master:2 - tmpfs tmpfs rw
garbage line
";

    #[test]
    fn parses_devices_mount_points_and_cgroup2() {
        let info = MountInfo::parse(SAMPLE);
        assert_eq!(info.mounts().len(), 5);
        assert!(info.has_device(254, 0));
        assert!(info.has_device(0, 40));
        assert!(
            !info.has_device(0, 42),
            "a btrfs subvolume's anonymous device is no mount"
        );
        assert_eq!(
            info.cgroup2_mount().map(|p| p.display().to_string()),
            Some("/sys/fs/cgroup/unified".to_owned())
        );
        assert_eq!(info.mounts()[3].mount_point, PathBuf::from("/tmp/bt mnt"));
        assert_eq!(
            info.mounts()[4].fstype,
            "tmpfs",
            "optional fields are skipped"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process_mounts() {
        let info = MountInfo::read().expect("mountinfo");
        assert!(info
            .mounts()
            .iter()
            .any(|m| m.mount_point == std::path::Path::new("/")));
    }
}
