//! Trees: what a command changed, without following any symlink or opening any FIFO.

use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Node {
    /// A regular file: inode, mode, size and bytes (the first 64 KiB of a large one; csa
    /// rewrites by rename, so a changed large file has a new inode).
    File {
        ino: u64,
        mode: u32,
        len: u64,
        bytes: Vec<u8>,
    },
    Dir {
        mode: u32,
    },
    Link(PathBuf),
    Fifo,
    Other,
}

pub(super) fn node(path: &Path) -> Option<Node> {
    let meta = fs_err::symlink_metadata(path).ok()?;
    let ft = meta.file_type();
    Some(if ft.is_symlink() {
        Node::Link(fs_err::read_link(path).expect("readlink"))
    } else if ft.is_dir() {
        Node::Dir { mode: meta.mode() }
    } else if ft.is_file() {
        let bytes = if meta.len() <= MIB {
            fs_err::read(path).expect("read")
        } else {
            use std::io::Read;
            let mut buf = Vec::new();
            fs_err::File::open(path)
                .expect("open")
                .take(64 << 10)
                .read_to_end(&mut buf)
                .expect("read");
            buf
        };
        Node::File {
            ino: meta.ino(),
            mode: meta.mode(),
            len: meta.len(),
            bytes,
        }
    } else if ft.is_fifo() {
        Node::Fifo
    } else {
        Node::Other
    })
}

pub(super) type Tree = BTreeMap<String, Node>;

/// The text (lossy) of `path` if it is, through symlinks, a regular file of at most 1 MiB: the
/// test itself must not block on a FIFO or read /dev/zero.
pub(super) fn read_regular(path: &Path) -> Option<String> {
    read_regular_bytes(path).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The bytes of `path` under the same conditions as [`read_regular`].
pub(super) fn read_regular_bytes(path: &Path) -> Option<Vec<u8>> {
    let meta = fs_err::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MIB {
        return None;
    }
    fs_err::read(path).ok()
}

/// Every entry under `dir` (relative names), not following symlinks. Empty when absent.
pub(super) fn tree(dir: &Path) -> Tree {
    fn walk(base: &Path, dir: &Path, out: &mut Tree) {
        let Ok(entries) = fs_err::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(base)
                .expect("under base")
                .to_string_lossy()
                .into_owned();
            let Some(n) = node(&path) else { continue };
            let is_dir = matches!(n, Node::Dir { .. });
            out.insert(rel, n);
            if is_dir {
                walk(base, &path, out);
            }
        }
    }
    let mut out = Tree::new();
    walk(dir, dir, &mut out);
    out
}

/// What a command did to one session directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Delta {
    None,
    /// state.toml rewritten with an ended phase, and a valid result.toml (kept or added); nothing
    /// else changed.
    Finalized,
    /// The whole directory is gone.
    Gone,
    /// A new turn ran (resume): run.toml gained it, the old result moved to the turn history.
    Resumed,
    Other(Vec<String>),
}

pub(super) fn delta(dir: &Path, before: &Tree) -> Delta {
    if !dir.exists() && fs_err::symlink_metadata(dir).is_err() {
        return Delta::Gone;
    }
    let after = tree(dir);
    let changed: Vec<String> = before
        .keys()
        .chain(after.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect();
    if changed.is_empty() {
        return Delta::None;
    }
    let state: Option<toml::Table> =
        read_regular(&dir.join("state.toml")).and_then(|t| toml::from_str(&t).ok());
    let ended = state
        .as_ref()
        .and_then(|s| s.get("phase"))
        .and_then(|p| p.as_str())
        .is_some_and(|p| p != "active");
    let result_ok = read_regular(&dir.join("result.toml"))
        .is_some_and(|t| toml::from_str::<SessionResult>(&t).is_ok());
    let only_state_result = changed
        .iter()
        .all(|k| k == "state.toml" || k == "result.toml");
    if only_state_result && changed.iter().any(|k| k == "state.toml") && ended && result_ok {
        return Delta::Finalized;
    }
    let turn2 = state
        .as_ref()
        .and_then(|s| s.get("turn_count"))
        .and_then(|v| v.as_integer())
        == Some(2);
    if turn2 && dir.join("output/turns/turn-000001/result.toml").exists() {
        return Delta::Resumed;
    }
    Delta::Other(changed)
}
