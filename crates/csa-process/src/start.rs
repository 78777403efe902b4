//! A process's start time, in the unit of whoever read it: the one field that tells a process
//! from another that got the same pid later.
//!
//! Each backend reads the most precise start time its platform keeps, and csa records it under
//! a key named by its unit (docs/format.md), never under another unit's key:
//!
//! | unit | read by | recorded as (lock body / `membership.toml`) |
//! | --- | --- | --- |
//! | [`StartTime::Ticks`]: clock ticks since boot (`sysconf(_SC_CLK_TCK)`, 100 per second on Linux) | procfs backend, field 22 of `/proc/<pid>/stat`; upstream | `pid_start_time_ticks` / `start_ticks` |
//! | [`StartTime::Micros`]: microseconds since the Unix epoch, the kernel's record of the start | portable backend on macOS (`proc_pidinfo`: `pbi_start_tvsec`, `pbi_start_tvusec`) | `pid_start_time_us` / `start_time_us` |
//! | [`StartTime::BootSeconds`]: whole seconds since boot | portable backend elsewhere (sysinfo's start time less its boot time) | `pid_start_time_boot_s` / `start_time_boot_s` |
//!
//! Comparison is like with like ([`StartTime::same_process`]): ticks with ticks, microseconds
//! with microseconds, seconds with seconds. The one conversion is ticks to whole seconds since
//! boot (`ticks / CLK_TCK`, exactly how the kernel's own seconds are derived), so that a record
//! in ticks can be checked by a backend that reads seconds, at the precision of a second. A
//! value in microseconds since the epoch is never compared with one counted from boot: the two
//! are tied only through the wall clock, which can be set. Incomparable values are unknown, and
//! unknown counts as alive.

/// When a process started, in the unit it was read or recorded in (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartTime {
    /// Clock ticks since boot (field 22 of `/proc/<pid>/stat`).
    Ticks(u64),
    /// Microseconds since the Unix epoch, as the kernel recorded the start (fixed for the
    /// process's life; setting the clock later does not change it).
    Micros(u64),
    /// Whole seconds since boot. A pid reused within the same second compares equal, so csa
    /// also requires the session's marker for the processes it starts.
    BootSeconds(u64),
}

impl StartTime {
    /// The start time recorded in a file: the first of `ticks`, `micros` and `boot_seconds`
    /// present (csa writes exactly one; upstream writes ticks); `None` when none is.
    pub fn from_recorded(
        ticks: Option<u64>,
        micros: Option<u64>,
        boot_seconds: Option<u64>,
    ) -> Option<Self> {
        ticks
            .map(StartTime::Ticks)
            .or(micros.map(StartTime::Micros))
            .or(boot_seconds.map(StartTime::BootSeconds))
    }

    /// The value when it is in clock ticks (the `pid_start_time_ticks` key).
    pub fn ticks(self) -> Option<u64> {
        match self {
            StartTime::Ticks(t) => Some(t),
            _ => None,
        }
    }

    /// The value when it is in microseconds since the epoch (the `pid_start_time_us` key).
    pub fn micros(self) -> Option<u64> {
        match self {
            StartTime::Micros(us) => Some(us),
            _ => None,
        }
    }

    /// The value when it is in whole seconds since boot (the `pid_start_time_boot_s` key).
    pub fn boot_seconds(self) -> Option<u64> {
        match self {
            StartTime::BootSeconds(s) => Some(s),
            _ => None,
        }
    }

    /// Whether `recorded` and `observed` are the start of the same process: `Some(true)` when
    /// equal in a common unit, `Some(false)` when they differ, `None` when they cannot be
    /// compared (microseconds since the epoch against a count from boot, or ticks when the
    /// clock-tick rate is unknown). Ticks against seconds compare at the precision of a
    /// second (`ticks / CLK_TCK`).
    pub fn same_process(recorded: StartTime, observed: StartTime) -> Option<bool> {
        use StartTime::{BootSeconds, Micros, Ticks};
        match (recorded, observed) {
            (Ticks(a), Ticks(b)) | (Micros(a), Micros(b)) | (BootSeconds(a), BootSeconds(b)) => {
                Some(a == b)
            }
            (Ticks(t), BootSeconds(s)) | (BootSeconds(s), Ticks(t)) => {
                clock_ticks_per_second().map(|hz| t / hz == s)
            }
            (Micros(_), _) | (_, Micros(_)) => None,
        }
    }

    /// The precision a comparison of `recorded` with `observed` has, for messages: `one clock
    /// tick`, `one microsecond`, `one second`.
    pub fn precision(recorded: StartTime, observed: StartTime) -> &'static str {
        use StartTime::{Micros, Ticks};
        match (recorded, observed) {
            (Ticks(_), Ticks(_)) => "one clock tick",
            (Micros(_), Micros(_)) => "one microsecond",
            _ => "one second",
        }
    }
}

impl StartTime {
    /// The start time as it goes into a file name (csa's temp files and builds,
    /// `.tmp-<pid>.<tag>-…`): ticks as plain digits (the form csa always wrote), microseconds
    /// as `u<digits>`, seconds since boot as `b<digits>`. Only `[0-9ub]`, so never a `.`, `-`
    /// or `/`.
    pub fn tag(self) -> String {
        match self {
            StartTime::Ticks(t) => t.to_string(),
            StartTime::Micros(us) => format!("u{us}"),
            StartTime::BootSeconds(s) => format!("b{s}"),
        }
    }

    /// Reads a [`StartTime::tag`] back; `None` for anything else (and for `0`, which csa
    /// writes when the start time is unknown).
    pub fn from_tag(tag: &str) -> Option<Self> {
        let digits = |s: &str| {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u64>().ok())
                .flatten()
        };
        let start = if let Some(us) = tag.strip_prefix('u') {
            StartTime::Micros(digits(us)?)
        } else if let Some(s) = tag.strip_prefix('b') {
            StartTime::BootSeconds(digits(s)?)
        } else {
            StartTime::Ticks(digits(tag)?)
        };
        (start != StartTime::Ticks(0)).then_some(start)
    }
}

impl std::fmt::Display for StartTime {
    /// `start ticks 123`, `start time 1733330000123456 µs`, `started 42 s after boot`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartTime::Ticks(t) => write!(f, "start ticks {t}"),
            StartTime::Micros(us) => write!(f, "start time {us} µs"),
            StartTime::BootSeconds(s) => write!(f, "started {s} s after boot"),
        }
    }
}

/// `sysconf(_SC_CLK_TCK)`: clock ticks per second (100 on every Linux csa runs on); `None`
/// when unknown.
pub fn clock_ticks_per_second() -> Option<u64> {
    static HZ: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .and_then(|hz| u64::try_from(hz).ok())
            .filter(|&hz| hz > 0)
    })
}

#[cfg(test)]
mod tests {
    use super::StartTime::{self, BootSeconds, Micros, Ticks};

    #[test]
    fn compares_like_with_like_only() {
        let hz = super::clock_ticks_per_second().expect("CLK_TCK");
        let rows: [(StartTime, StartTime, Option<bool>); 9] = [
            (Ticks(7), Ticks(7), Some(true)),
            (Ticks(7), Ticks(8), Some(false)),
            (Micros(5), Micros(5), Some(true)),
            (Micros(5), Micros(6), Some(false)),
            (BootSeconds(3), BootSeconds(4), Some(false)),
            (Ticks(3 * hz + hz - 1), BootSeconds(3), Some(true)),
            (BootSeconds(3), Ticks(4 * hz), Some(false)),
            (Micros(3_000_000), BootSeconds(3), None),
            (Ticks(300), Micros(3_000_000), None),
        ];
        for (recorded, observed, want) in rows {
            assert_eq!(
                StartTime::same_process(recorded, observed),
                want,
                "{recorded} vs {observed}"
            );
        }
    }

    #[test]
    fn tags_round_trip() {
        for start in [Ticks(12), Micros(34), BootSeconds(56)] {
            assert_eq!(StartTime::from_tag(&start.tag()), Some(start));
        }
        assert_eq!(Micros(34).tag(), "u34");
        for bad in ["0", "", "u", "b-1", "x1", "1.2", "u1b"] {
            assert_eq!(StartTime::from_tag(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reads_the_first_recorded_unit() {
        assert_eq!(StartTime::from_recorded(None, None, None), None);
        assert_eq!(
            StartTime::from_recorded(Some(1), Some(2), None),
            Some(Ticks(1))
        );
        assert_eq!(
            StartTime::from_recorded(None, Some(2), Some(3)),
            Some(Micros(2))
        );
        assert_eq!(
            StartTime::from_recorded(None, None, Some(3)),
            Some(BootSeconds(3))
        );
        assert_eq!(Micros(2).micros(), Some(2));
        assert_eq!(Micros(2).ticks(), None);
        assert_eq!(BootSeconds(3).boot_seconds(), Some(3));
    }
}
