//! The queue of frames waiting to be sent to one attached client. The agent's output is
//! never held up by a client: the output thread only appends here, and a client that falls
//! more than [`OUTBOX_LIMIT`] bytes behind skips the output it has not received yet and is
//! sent a repaint of the screen instead (the "resync"), so a stalled watcher costs a bounded
//! amount of memory and loses nothing it would see on its screen.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

/// How many bytes of output may wait for one client before it is resynchronised with a
/// repaint: 1 MiB.
pub const OUTBOX_LIMIT: usize = 1 << 20;

/// One client's queue.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: Mutex<Queue>,
    ready: Condvar,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
    resync: bool,
    /// The last frame (exit, detached): sent after the backlog and after a pending resync's
    /// repaint, so a lagging client still sees the final screen before it is told the end.
    last: Option<Vec<u8>>,
    /// Nothing more is queued.
    closed: bool,
}

/// What the client's sender does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Send this frame.
    Frame(Vec<u8>),
    /// Output was skipped: send a repaint, then call [`Outbox::end_resync`] (both while holding
    /// the server's state lock, so no output falls between them).
    Resync,
    /// Nothing more will come: close the connection.
    Closed,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame that must arrive whatever the backlog (welcome, repaint).
    pub(crate) fn push(&self, frame: Vec<u8>) {
        let mut q = self.lock();
        if !q.closed {
            q.bytes += frame.len();
            q.frames.push_back(frame);
            self.ready.notify_one();
        }
    }

    /// Queues an output frame, or starts (or continues) a resync when the backlog would pass
    /// [`OUTBOX_LIMIT`].
    pub(crate) fn push_output(&self, frame: &[u8]) {
        let mut q = self.lock();
        if q.closed || q.resync {
            return;
        }
        if q.bytes + frame.len() > OUTBOX_LIMIT {
            q.resync = true;
        } else {
            q.bytes += frame.len();
            q.frames.push_back(frame.to_vec());
        }
        self.ready.notify_one();
    }

    /// Queues a last frame (exit, detached); nothing is queued after it.
    pub(crate) fn push_final(&self, frame: Vec<u8>) {
        let mut q = self.lock();
        if !q.closed {
            q.last = Some(frame);
            q.closed = true;
            self.ready.notify_one();
        }
    }

    /// Drops everything queued: the client is gone.
    pub(crate) fn abandon(&self) {
        let mut q = self.lock();
        q.frames.clear();
        q.resync = false;
        q.last = None;
        q.closed = true;
        self.ready.notify_one();
    }

    /// Waits for the next thing to do.
    pub(crate) fn next(&self) -> Next {
        let mut q = self.lock();
        loop {
            if let Some(frame) = q.frames.pop_front() {
                q.bytes = q.bytes.saturating_sub(frame.len());
                return Next::Frame(frame);
            }
            if q.resync {
                return Next::Resync;
            }
            if let Some(frame) = q.last.take() {
                return Next::Frame(frame);
            }
            if q.closed {
                return Next::Closed;
            }
            q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The repaint that ends a resync has been taken; output is queued again from now on.
    pub(crate) fn end_resync(&self) {
        self.lock().resync = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_client_is_resynchronised_not_buffered_without_bound() {
        let outbox = Outbox::default();
        let chunk = vec![b'x'; 4096];
        let mut queued = 0;
        for _ in 0..(2 * OUTBOX_LIMIT / chunk.len()) {
            outbox.push_output(&chunk);
        }
        loop {
            match outbox.next() {
                Next::Frame(f) => queued += f.len(),
                Next::Resync => break,
                Next::Closed => panic!("closed"),
            }
        }
        assert!(queued <= OUTBOX_LIMIT, "{queued}");
        // Output during the resync is skipped (the repaint covers it).
        outbox.push_output(b"skipped");
        assert_eq!(outbox.next(), Next::Resync);
        outbox.end_resync();
        outbox.push_output(b"after");
        assert_eq!(outbox.next(), Next::Frame(b"after".to_vec()));
        outbox.push_final(b"exit".to_vec());
        outbox.push_output(b"too late");
        assert_eq!(outbox.next(), Next::Frame(b"exit".to_vec()));
        assert_eq!(outbox.next(), Next::Closed);
    }

    #[test]
    fn a_lagging_client_gets_the_final_screen_before_the_end() {
        let outbox = Outbox::default();
        let chunk = vec![b'x'; OUTBOX_LIMIT];
        outbox.push_output(b"backlog");
        outbox.push_output(&chunk);
        outbox.push_final(b"exit".to_vec());
        assert_eq!(outbox.next(), Next::Frame(b"backlog".to_vec()));
        assert_eq!(outbox.next(), Next::Resync);
        outbox.end_resync();
        assert_eq!(outbox.next(), Next::Frame(b"exit".to_vec()));
        assert_eq!(outbox.next(), Next::Closed);
        // A client that is gone gets nothing more, not even a pending end.
        let gone = Outbox::default();
        gone.push_output(&chunk);
        gone.push_output(&chunk);
        gone.push_final(b"exit".to_vec());
        gone.abandon();
        assert_eq!(gone.next(), Next::Closed);
    }

    #[test]
    fn waits_for_a_frame_from_another_thread() {
        let outbox = std::sync::Arc::new(Outbox::default());
        let pusher = {
            let outbox = outbox.clone();
            std::thread::spawn(move || outbox.push(b"hello".to_vec()))
        };
        assert_eq!(outbox.next(), Next::Frame(b"hello".to_vec()));
        pusher.join().expect("join");
    }
}
