//! Raw mode for the user's terminal while a client is attached (cfmakeraw(3): no echo, no
//! line editing, no signal keys, no output processing), and its restoration on every exit
//! path: the [`RawMode`] guard restores when dropped (normal return, early return, unwinding
//! panic), and a panic hook installed on first use restores before the panic message is
//! printed (so the message is readable, and so a `panic = "abort"` build restores too). The
//! client restores before it acts on a terminating signal ([`crate::client`]); only `SIGKILL`
//! leaves the terminal raw (`stty sane` or `reset` repairs it).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, Once};

use rustix::termios::{OptionalActions, Termios};

use crate::error::{Result, TerminalError};

/// The modes to put back, for the panic hook: a duplicate of the terminal's fd and its modes.
static SAVED: Mutex<Option<(OwnedFd, Termios)>> = Mutex::new(None);
static HOOK: Once = Once::new();

/// The user's terminal in raw mode; its previous modes come back when this is dropped.
#[derive(Debug)]
pub struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

impl RawMode {
    /// Saves the modes of the terminal `fd` refers to and switches it to raw mode
    /// (`tcsetattr(TCSANOW)`).
    ///
    /// # Errors
    /// [`TerminalError::Io`] when `fd` is not a terminal or its modes cannot be read or set.
    pub fn enable(fd: impl AsFd) -> Result<RawMode> {
        let err =
            |what: &'static str| move |e: rustix::io::Errno| TerminalError::io(what, e.into());
        let fd = rustix::io::fcntl_dupfd_cloexec(fd, 0)
            .map_err(err("duplicate the terminal's file descriptor"))?;
        let saved = rustix::termios::tcgetattr(&fd).map_err(err("read the terminal's modes"))?;
        HOOK.call_once(install_panic_hook);
        if let Ok(copy) = fd.try_clone() {
            if let Ok(mut slot) = SAVED.lock() {
                *slot = Some((copy, saved.clone()));
            }
        }
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&fd, OptionalActions::Now, &raw)
            .map_err(err("switch the terminal to raw mode"))?;
        Ok(RawMode { fd, saved })
    }

    /// Puts the saved modes back now (also done on drop).
    ///
    /// # Errors
    /// [`TerminalError::Io`] from `tcsetattr`.
    pub fn restore(&self) -> Result<()> {
        rustix::termios::tcsetattr(&self.fd, OptionalActions::Now, &self.saved)
            .map_err(|e| TerminalError::io("restore the terminal's modes", e.into()))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = self.restore();
        if let Ok(mut slot) = SAVED.lock() {
            *slot = None;
        }
    }
}

/// Chains a hook that restores the saved modes in front of the current panic hook.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_saved();
        previous(info);
    }));
}

/// Restores the modes saved by a live [`RawMode`], if any. `try_lock`: a panic while the lock
/// is held must not deadlock.
fn restore_saved() {
    if let Ok(slot) = SAVED.try_lock() {
        if let Some((fd, modes)) = slot.as_ref() {
            let _ = rustix::termios::tcsetattr(fd, OptionalActions::Now, modes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pty::Pty;
    use crate::size::WindowSize;
    use rustix::termios::LocalModes;

    /// The saved modes are process-wide: these tests take turns.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn echo_and_canonical(fd: impl AsFd) -> bool {
        let modes = rustix::termios::tcgetattr(fd).expect("tcgetattr");
        modes
            .local_modes
            .contains(LocalModes::ECHO | LocalModes::ICANON)
    }

    #[test]
    fn restores_on_drop_and_on_unwinding_panic() {
        let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let pty = Pty::open(WindowSize::DEFAULT).expect("openpty");
        assert!(echo_and_canonical(pty.slave()));
        {
            let _raw = RawMode::enable(pty.slave()).expect("raw");
            assert!(!echo_and_canonical(pty.slave()), "raw mode was not set");
        }
        assert!(echo_and_canonical(pty.slave()), "not restored on drop");

        let slave = pty.slave().try_clone_to_owned().expect("dup");
        let outcome = std::panic::catch_unwind(move || {
            let _raw = RawMode::enable(&slave).expect("raw");
            assert!(!echo_and_canonical(&slave));
            panic!("a panic while attached");
        });
        assert!(outcome.is_err());
        assert!(
            echo_and_canonical(pty.slave()),
            "not restored after a panic"
        );
    }

    #[test]
    fn the_panic_hook_restores_before_anything_is_dropped() {
        let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let pty = Pty::open(WindowSize::DEFAULT).expect("openpty");
        let raw = RawMode::enable(pty.slave()).expect("raw");
        assert!(!echo_and_canonical(pty.slave()));
        // What the hook does first, as under `panic = "abort"`, where no destructor runs.
        restore_saved();
        assert!(echo_and_canonical(pty.slave()), "the hook did not restore");
        drop(raw);
    }

    #[test]
    fn refuses_what_is_not_a_terminal() {
        let file = tempfile::tempfile().expect("tempfile");
        let err = RawMode::enable(&file).expect_err("a file is not a terminal");
        assert!(err.to_string().contains("terminal's modes"), "{err}");
    }
}
