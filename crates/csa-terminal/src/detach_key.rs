//! The detach key: `Ctrl-\` (byte 0x1c) then `d`. While attached, the client reads the user's
//! keys through [`DetachKey::feed`], which passes every byte through except this sequence:
//!
//! | typed                         | sent to the agent | effect            |
//! |-------------------------------|-------------------|-------------------|
//! | `Ctrl-\` `d`                  | nothing           | detach            |
//! | `Ctrl-\` `Ctrl-\`             | one 0x1c          | (a literal `^\`)  |
//! | `Ctrl-\` then any other byte  | 0x1c and the byte |                   |
//!
//! A `Ctrl-\` at the end of one read waits for the next byte. `dtach` and `abduco` detach on
//! `Ctrl-\` alone; here it is a prefix, because `Ctrl-\` alone is the agent's `SIGQUIT` key,
//! which must still reach it.

/// The prefix byte, `Ctrl-\`.
pub const PREFIX: u8 = 0x1c;
/// The byte that detaches after the prefix.
pub const DETACH: u8 = b'd';

/// The detach-key state of one attached client.
#[derive(Debug, Default)]
pub struct DetachKey {
    pending_prefix: bool,
}

/// What a chunk of typed bytes means.
#[derive(Debug, PartialEq, Eq)]
pub struct Keys {
    /// The bytes to send to the agent, in order.
    pub forward: Vec<u8>,
    /// Whether the detach key was typed; bytes after it in the same chunk are dropped.
    pub detach: bool,
}

impl DetachKey {
    /// Interprets `typed`, continuing a prefix left pending by the previous call.
    pub fn feed(&mut self, typed: &[u8]) -> Keys {
        let mut forward = Vec::with_capacity(typed.len() + 1);
        for &byte in typed {
            if self.pending_prefix {
                self.pending_prefix = false;
                match byte {
                    DETACH => {
                        return Keys {
                            forward,
                            detach: true,
                        }
                    }
                    PREFIX => forward.push(PREFIX),
                    other => forward.extend_from_slice(&[PREFIX, other]),
                }
            } else if byte == PREFIX {
                self.pending_prefix = true;
            } else {
                forward.push(byte);
            }
        }
        Keys {
            forward,
            detach: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks typed (one read each), the bytes the agent must get, whether it detaches.
    type Case<'a> = (&'a [&'a [u8]], &'a [u8], bool);

    #[test]
    fn the_table_of_the_module_doc() {
        let cases: &[Case<'_>] = &[
            (&[b"abc"], b"abc", false),
            (&[b"ab\x1cd"], b"ab", true),
            (&[b"a\x1cdzz"], b"a", true),
            (&[b"\x1c\x1c"], b"\x1c", false),
            (&[b"\x1c\x1c", b"d"], b"\x1cd", false),
            (&[b"\x1cx"], b"\x1cx", false),
            (&[b"\x1c", b"d"], b"", true),
            (&[b"x\x1c", b"\x1c", b"y"], b"x\x1cy", false),
            (&[b"\x03"], b"\x03", false),
            (&[b"\x1c"], b"", false),
        ];
        for (chunks, forward, detach) in cases {
            let mut key = DetachKey::default();
            let mut sent = Vec::new();
            let mut detached = false;
            for chunk in *chunks {
                let keys = key.feed(chunk);
                sent.extend(keys.forward);
                if keys.detach {
                    detached = true;
                    break;
                }
            }
            assert_eq!(
                (sent.as_slice(), detached),
                (*forward, *detach),
                "typed {chunks:?}"
            );
        }
    }
}
