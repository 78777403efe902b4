//! Relative times for terminals ("3 minutes ago"), from the timeago crate: one unit, rounded
//! down, English. Plain output prints exact timestamps instead ([`super::Layout::Plain`]).

use chrono::{DateTime, SecondsFormat, Utc};

/// Formats timestamps relative to one `now`, taken once per table so every row agrees.
#[derive(Debug)]
pub struct Ago {
    now: DateTime<Utc>,
}

impl Ago {
    /// Relative to `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        Ago { now }
    }

    /// `then` as "N units ago" (largest unit, rounded down: "59 minutes ago", "2 hours ago"),
    /// "now" under a second. A time in the future (another machine's clock, or a hand-edited
    /// file) is printed exactly (RFC 3339), since "ago" would be false.
    pub fn format(&self, then: DateTime<Utc>) -> String {
        match (self.now - then).to_std() {
            Ok(age) => timeago::Formatter::new().convert(age),
            Err(_) => then.to_rfc3339_opts(SecondsFormat::Secs, true),
        }
    }

    /// [`Ago::format`] of an RFC 3339 timestamp; anything else is returned as it is.
    pub fn format_rfc3339(&self, text: &str) -> String {
        match DateTime::parse_from_rfc3339(text) {
            Ok(then) => self.format(then.with_timezone(&Utc)),
            Err(_) => text.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_down_to_the_largest_unit() {
        let now = Utc::now();
        let ago = Ago::new(now);
        let before = |secs| now - chrono::Duration::seconds(secs);
        assert_eq!(ago.format(now), "now");
        assert_eq!(ago.format(before(1)), "1 second ago");
        assert_eq!(ago.format(before(3 * 60 + 59)), "3 minutes ago");
        assert_eq!(ago.format(before(2 * 3600 + 1)), "2 hours ago");
        assert_eq!(ago.format(before(3 * 86_400)), "3 days ago");
        let future = now + chrono::Duration::seconds(3600);
        assert_eq!(
            ago.format(future),
            future.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        assert_eq!(ago.format_rfc3339("garbage"), "garbage");
    }
}
