//! Progress on stderr for work that can take more than a second on a terminal (reconcile or
//! clean of thousands of sessions), drawn by indicatif. Nothing is drawn unless stderr is a
//! terminal, the output format is text and `-q` was not given ([`enabled`]), and nothing until
//! the work has taken a second, so quick runs (a pre-commit hook's) never flash a bar; the line
//! is cleared when the work ends. Scripts and CI logs therefore never see it.

use std::io::IsTerminal;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::Format;

/// How long work runs before its progress is shown.
const DELAY: Duration = Duration::from_secs(1);

/// Whether progress may be shown: stderr is a terminal, `format` is text, and not `quiet`.
pub fn enabled(format: Format, quiet: bool) -> bool {
    format == Format::Text && !quiet && std::io::stderr().is_terminal()
}

/// The thread that starts drawing a [`Counter`] after [`DELAY`], and the sender that stops it
/// sooner.
type Reveal = (mpsc::Sender<()>, thread::JoinHandle<()>);

/// A count of items done, shown as `⠋ <what>: N sessions (3s)` once a second has passed.
/// Clones share the count (one may be moved into a library's progress callback).
#[derive(Debug, Clone)]
pub struct Counter {
    bar: ProgressBar,
    reveal: Arc<Mutex<Option<Reveal>>>,
}

impl Counter {
    /// A counter for `what` (e.g. "reconciling"), drawn only if `enabled`, from a second on.
    pub fn new(what: &str, enabled: bool) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} {msg}: {pos} sessions ({elapsed})")
        {
            bar.set_style(style);
        }
        bar.set_message(what.to_owned());
        let reveal = enabled.then(|| {
            let (stop, stopped) = mpsc::channel::<()>();
            let shown = bar.clone();
            let handle = thread::spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(DELAY) {
                    shown.set_draw_target(ProgressDrawTarget::stderr());
                    shown.enable_steady_tick(Duration::from_millis(100));
                }
            });
            (stop, handle)
        });
        Counter {
            bar,
            reveal: Arc::new(Mutex::new(reveal)),
        }
    }

    /// Records that `done` items are done.
    pub fn set(&self, done: u64) {
        self.bar.set_position(done);
    }

    /// Records one more item done.
    pub fn inc(&self) {
        self.bar.inc(1);
    }

    /// Clears the line (if it was drawn); the output that follows starts on a clean line.
    pub fn finish(&self) {
        let reveal = self.reveal.lock().ok().and_then(|mut r| r.take());
        if let Some((stop, handle)) = reveal {
            let _ = stop.send(());
            let _ = handle.join();
        }
        self.bar.finish_and_clear();
    }
}

/// A single "waiting for …" line with a spinner and the time waited, redrawn in place while a
/// command waits on a terminal; cleared when dropped.
#[derive(Debug)]
pub struct Waiting {
    bar: ProgressBar,
}

impl Waiting {
    /// Starts the line with `message` (e.g. "waiting for session 01M… (running)").
    pub fn start(message: String) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(100));
        Waiting { bar }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
