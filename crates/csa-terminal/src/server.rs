//! The supervisor's side: owns the agent's pseudo-terminal master, records everything the
//! agent writes (raw into `output.log`, as asciicast v2 into `output.cast`, and into a
//! terminal-state model, the `vt100` crate, to repaint the screen for a client that attaches
//! later), and serves attach clients on the session's socket ([`crate::socket`],
//! [`crate::protocol`]).
//!
//! Threads (all started by [`Server::start`], all ended by [`Server::finish`] or drop):
//! - the output thread reads the master until every holder of the slave has closed it (or the
//!   server stops), and appends each chunk to the log, the recording, the model and every
//!   client's outbox, in that order;
//! - the accept thread takes connections on the socket;
//! - each connection has a thread that checks the peer's user, reads its `Hello`, then relays
//!   its input to the master (writer only), and a thread that sends its outbox.
//!
//! Invariants: at most one client is the writer; the model, the recording's resize events and
//! the clients' outboxes change under one lock, so a client's repaint plus the output queued
//! after it is exactly the screen (no output is lost or shown twice); the agent's output never
//! waits for a client (see [`OUTBOX_LIMIT`]); the server installs no signal handler and sends no
//! signal (the pseudo-terminal's line discipline turns a client's `^C` into the agent's
//! `SIGINT`, and a resize into its `SIGWINCH`).

use std::fs::File;
use std::io::{Read, Write};
use std::num::NonZeroU16;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};

use crate::asciicast::CastWriter;
use crate::error::{Result, TerminalError};
use crate::exit::AgentExit;
use crate::outbox::{Next, Outbox};
use crate::peer;
use crate::protocol::{
    self, AttachStatus, ClientMessage, Decoder, DetachReason, Hello, Mode, Refusal, ServerMessage,
};
use crate::pty::PtyMaster;
use crate::size::WindowSize;
use crate::socket::Listening;

pub use crate::outbox::OUTBOX_LIMIT;

/// How much of the agent's first output is kept to replay to a client that asks for it (the
/// client that started the session, which attaches just after the agent started): 1 MiB.
/// Past that, a replay request gets a repaint.
pub const REPLAY_LIMIT: usize = 1 << 20;

/// How long a connection may take to send its `Hello`: 10 seconds.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Server::finish`] waits for clients to receive the exit status: 2 seconds.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(2);

/// Rows of scrollback the model keeps: none (a repaint shows the screen, like tmux's attach).
const SCROLLBACK: usize = 0;

/// Called with the new [`AttachStatus`] each time it changes (a client attached or detached,
/// the writer changed), in order, while the server's lock is held: keep it short (write a
/// small file, set a flag) and do not call back into the [`Server`].
pub type StatusCallback = Box<dyn FnMut(AttachStatus) + Send>;

/// What the server records to and reports to, besides serving clients.
#[derive(Default)]
pub struct ServerOptions {
    /// The session's `output.log`, opened for appending: every byte the agent writes, as it
    /// wrote it.
    pub log: Option<File>,
    /// The session's asciicast recording (`output.cast`), its header already written.
    pub cast: Option<CastWriter>,
    /// Told about attach status changes.
    pub on_status: Option<StatusCallback>,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("log", &self.log)
            .field("cast", &self.cast)
            .field("on_status", &self.on_status.as_ref().map(|_| "…"))
            .finish()
    }
}

/// A running server: see the module doc.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    listening: Arc<Listening>,
    stop: Option<OwnedFd>,
    output: Option<JoinHandle<()>>,
    output_done: mpsc::Receiver<()>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    master: PtyMaster,
    /// Readable once the server stops (the read end of a pipe nobody reads).
    stopped: OwnedFd,
    me: u32,
    senders: Mutex<usize>,
    senders_done: Condvar,
}

struct State {
    model: vt100::Parser,
    size: WindowSize,
    clients: Vec<Client>,
    next_id: u64,
    writer: Option<u64>,
    finished: bool,
    cast: Option<CastWriter>,
    history: Option<Vec<u8>>,
    on_status: Option<StatusCallback>,
    reported: AttachStatus,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("size", &self.size)
            .field("clients", &self.clients)
            .field("writer", &self.writer)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Client {
    id: u64,
    read_only: bool,
    pid: Option<u32>,
    outbox: Arc<Outbox>,
}

fn nonzero(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN)
}

impl State {
    fn status(&self) -> AttachStatus {
        AttachStatus {
            writer: self.writer.is_some(),
            watchers: u32::try_from(self.clients.iter().filter(|c| c.read_only).count())
                .unwrap_or(u32::MAX),
        }
    }

    fn report(&mut self) {
        let status = self.status();
        if status != self.reported {
            self.reported = status;
            if let Some(callback) = self.on_status.as_mut() {
                callback(status);
            }
        }
    }

    fn repaint(&self) -> Vec<u8> {
        let screen = self.model.screen();
        let mut out = Vec::new();
        if screen.alternate_screen() {
            out.extend_from_slice(b"\x1b[?1049h");
        }
        out.extend_from_slice(screen.state_formatted().as_bytes());
        out
    }

    fn resize(&mut self, master: &PtyMaster, size: WindowSize) {
        let size = size.clamped();
        if size == self.size {
            return;
        }
        if let Err(err) = master.resize(size) {
            tracing::warn!(%err, "cannot resize the agent's terminal");
            return;
        }
        self.size = size;
        self.model.set_size(nonzero(size.rows), nonzero(size.cols));
        if let Some(cast) = self.cast.as_mut() {
            if let Err(err) = cast.resize(size) {
                tracing::warn!(%err, "cannot write the session's recording; it stops here");
                self.cast = None;
            }
        }
    }

    /// Removes client `id`, giving it `last` as its final frame (or dropping its queue). The
    /// caller reports the status once its change is complete.
    fn remove(&mut self, id: u64, last: Option<ServerMessage>) {
        if let Some(outbox) = self.take(id) {
            match last {
                Some(message) => outbox.push_final(message.encode()),
                None => outbox.abandon(),
            }
        }
    }

    /// Removes client `id` and returns its queue, for a final frame sent after the status is
    /// reported.
    fn take(&mut self, id: u64) -> Option<Arc<Outbox>> {
        let taken = self
            .clients
            .iter()
            .position(|c| c.id == id)
            .map(|index| self.clients.swap_remove(index).outbox);
        if self.writer == Some(id) {
            self.writer = None;
        }
        taken
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn output(&self, bytes: &[u8]) {
        let frame = ServerMessage::Output(bytes.to_vec()).encode();
        let mut state = self.lock();
        state.model.process(bytes);
        if let Some(history) = state.history.as_mut() {
            if history.len() + bytes.len() <= REPLAY_LIMIT {
                history.extend_from_slice(bytes);
            } else {
                state.history = None;
            }
        }
        if let Some(cast) = state.cast.as_mut() {
            if let Err(err) = cast.output(bytes) {
                tracing::warn!(%err, "cannot write the session's recording; it stops here");
                state.cast = None;
            }
        }
        for client in &state.clients {
            client.outbox.push_output(&frame);
        }
    }

    fn is_stopped(&self) -> bool {
        let mut fds = [PollFd::new(&self.stopped, PollFlags::IN)];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
    }
}

/// Waits until `fd` is readable or the server stops; `false` when it stopped.
fn wait_readable(fd: BorrowedFd<'_>, stopped: &OwnedFd) -> bool {
    loop {
        let mut fds = [
            PollFd::new(&fd, PollFlags::IN),
            PollFd::new(stopped, PollFlags::IN),
        ];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {
                if !fds[1].revents().is_empty() {
                    return false;
                }
                if !fds[0].revents().is_empty() {
                    return true;
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(err) => {
                tracing::warn!(%err, "poll failed");
                return false;
            }
        }
    }
}

impl Server {
    /// Starts serving: creates the attach socket in `dir` (the session directory, opened by
    /// the caller without following links and verified; `dir_path` is its path, for messages
    /// and platforms without `/proc`), and starts the threads of the module doc. Call it right
    /// after the agent is spawned on the terminal of `master` ([`crate::pty::Pty`]); output
    /// the agent writes before is kept in the terminal and read then.
    ///
    /// # Errors
    /// Creating the socket ([`Listening::create`]); [`TerminalError::Io`] when a pipe or a
    /// thread cannot be created.
    pub fn start(
        master: PtyMaster,
        dir: BorrowedFd<'_>,
        dir_path: &Path,
        options: ServerOptions,
    ) -> Result<Server> {
        // std's pipe is close-on-exec on every platform.
        let (stopped, stop) = std::io::pipe().map_err(|e| TerminalError::io("create a pipe", e))?;
        let (stopped, stop) = (OwnedFd::from(stopped), OwnedFd::from(stop));
        let listening = Arc::new(Listening::create(dir, dir_path)?);
        let size = master.size();
        let ServerOptions {
            log,
            cast,
            on_status,
        } = options;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                model: vt100::Parser::new(nonzero(size.rows), nonzero(size.cols), SCROLLBACK),
                size,
                clients: Vec::new(),
                next_id: 0,
                writer: None,
                finished: false,
                cast,
                history: Some(Vec::new()),
                on_status,
                reported: AttachStatus::default(),
            }),
            master,
            stopped,
            me: peer::euid(),
            senders: Mutex::new(0),
            senders_done: Condvar::new(),
        });
        let spawn_err = |e| TerminalError::io("start a thread", e);
        let (done_tx, output_done) = mpsc::channel();
        let output = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("csa-pty-output".into())
                .spawn(move || {
                    pump_output(&shared, log);
                    let _ = done_tx.send(());
                })
                .map_err(|e| {
                    listening.remove();
                    spawn_err(e)
                })?
        };
        let mut server = Server {
            shared: shared.clone(),
            listening: listening.clone(),
            stop: Some(stop),
            output: Some(output),
            output_done,
            accept: None,
        };
        let accept = thread::Builder::new()
            .name("csa-pty-accept".into())
            .spawn(move || accept_loop(&shared, &listening))
            .map_err(spawn_err)?;
        server.accept = Some(accept);
        Ok(server)
    }

    /// Who is attached now.
    pub fn status(&self) -> AttachStatus {
        self.shared.lock().status()
    }

    /// The attach socket's path (for messages).
    pub fn socket_path(&self) -> &Path {
        self.listening.path()
    }

    /// Ends the session's terminal once the agent has ended with `exit` (the caller has
    /// reaped it): reads the output still in the terminal until every holder of the slave has
    /// closed it or `drain` has passed (descendants of the agent may keep it open; their later
    /// output is not recorded), sends `Exit` to every attached client and waits up to 2 seconds
    /// for them to receive it, stops the threads and removes the socket. The master is closed,
    /// hanging up the terminal (`SIGHUP` to whatever still runs on it), when the last thread
    /// using it ends: at once, except for a connection still in its handshake (at most
    /// [`HANDSHAKE_TIMEOUT`]) or a client's input blocked on a terminal nobody reads; at the
    /// latest when the supervisor process exits.
    pub fn finish(mut self, exit: AgentExit, drain: Duration) {
        if self.output_done.recv_timeout(drain).is_err() {
            tracing::debug!("the agent's terminal is still open after {drain:?}; stopping");
        }
        self.shutdown(ServerMessage::Exit(exit));
    }

    fn shutdown(&mut self, last: ServerMessage) {
        let Some(stop) = self.stop.take() else {
            return;
        };
        let _ = rustix::io::write(&stop, b"x");
        if let Some(output) = self.output.take() {
            let _ = output.join();
        }
        {
            let mut state = self.shared.lock();
            state.finished = true;
            let ids: Vec<u64> = state.clients.iter().map(|c| c.id).collect();
            for id in ids {
                state.remove(id, Some(last.clone()));
            }
            state.report();
            if let Some(cast) = state.cast.as_mut() {
                let _ = cast.finish();
            }
        }
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        self.listening.remove();
        let deadline = Instant::now() + FAREWELL_TIMEOUT;
        let mut senders = self
            .shared
            .senders
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while *senders > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            senders = match self.shared.senders_done.wait_timeout(senders, left) {
                Ok((guard, _)) => guard,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

impl Drop for Server {
    /// Without [`Server::finish`] (the supervisor is failing): clients are told the
    /// supervisor is shutting down, and the socket is removed.
    fn drop(&mut self) {
        self.shutdown(ServerMessage::Detached(DetachReason::Shutdown));
    }
}

fn pump_output(shared: &Shared, mut log: Option<File>) {
    let mut buf = vec![0u8; 16 * 1024];
    while wait_readable(shared.master.as_fd(), &shared.stopped) {
        match shared.master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Some(file) = log.as_mut() {
                    if let Err(err) = file.write_all(&buf[..n]) {
                        tracing::warn!(%err, "cannot write the session's output.log; it stops here");
                        log = None;
                    }
                }
                shared.output(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            // EIO: every holder of the slave has closed it.
            Err(_) => break,
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, listening: &Listening) {
    let listener = listening.listener();
    while wait_readable(listener.as_fd(), &shared.stopped) {
        match listener.accept() {
            Ok((stream, _)) => {
                let shared = shared.clone();
                let spawned = thread::Builder::new()
                    .name("csa-pty-client".into())
                    .spawn(move || serve_client(&shared, stream));
                if let Err(err) = spawned {
                    tracing::warn!(%err, "cannot start a thread for an attach client");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => {
                tracing::warn!(%err, "cannot accept an attach client");
                if shared.is_stopped() {
                    break;
                }
            }
        }
    }
}

/// Reads the next message of a client, blocking; `None` at end of stream.
fn read_client(stream: &mut UnixStream, decoder: &mut Decoder) -> Result<Option<ClientMessage>> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(message) = decoder.next_client()? {
            return Ok(Some(message));
        }
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(TerminalError::io("read from an attach client", e)),
        };
        if n == 0 {
            return Ok(None);
        }
        decoder.push(&buf[..n]);
    }
}

fn serve_client(shared: &Arc<Shared>, mut stream: UnixStream) {
    let say = |stream: &UnixStream, message: ServerMessage| {
        let _ = protocol::send_all(stream.as_fd(), &message.encode());
    };
    let peer = match peer::peer(stream.as_fd()) {
        Ok(peer) if peer.uid == shared.me => peer,
        Ok(_) => return say(&stream, ServerMessage::Refused(Refusal::NotOwner)),
        Err(err) => {
            tracing::warn!(%err, "refusing an attach client whose user cannot be read");
            return say(&stream, ServerMessage::Refused(Refusal::NotOwner));
        }
    };
    let _ = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let mut decoder = Decoder::default();
    let hello = match read_client(&mut stream, &mut decoder) {
        Ok(Some(ClientMessage::Hello(hello))) => hello,
        Ok(_) => return,
        Err(err) => {
            tracing::debug!(%err, "an attach client failed its handshake");
            return;
        }
    };
    let _ = stream.set_read_timeout(None);
    if hello.version != protocol::VERSION {
        return say(
            &stream,
            ServerMessage::Refused(Refusal::ProtocolVersion {
                server: protocol::VERSION,
            }),
        );
    }
    if hello.mode == Mode::Status {
        let status = shared.lock().status();
        return say(&stream, ServerMessage::Status(status));
    }
    let outbox = Arc::new(Outbox::default());
    let id = match admit(shared, &hello, peer.pid, &outbox) {
        Ok(id) => id,
        Err(refusal) => return say(&stream, ServerMessage::Refused(refusal)),
    };
    let sender = match stream.try_clone() {
        Ok(sender) => sender,
        Err(err) => {
            tracing::warn!(%err, "cannot duplicate an attach client's socket");
            forget(shared, id);
            return;
        }
    };
    *shared.senders.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    let spawned = {
        let shared = shared.clone();
        let outbox = outbox.clone();
        thread::Builder::new()
            .name("csa-pty-send".into())
            .spawn(move || send_outbox(&shared, &outbox, &sender))
    };
    if let Err(err) = spawned {
        tracing::warn!(%err, "cannot start a thread for an attach client");
        sender_finished(shared);
        forget(shared, id);
        return;
    }
    relay_input(shared, id, &mut stream, &mut decoder);
    forget(shared, id);
}

/// Removes client `id` (if still there) without a last word, and reports the status.
fn forget(shared: &Shared, id: u64) {
    let mut state = shared.lock();
    state.remove(id, None);
    state.report();
}

/// Registers a client per its hello, queueing its welcome and first screen; its id.
fn admit(
    shared: &Shared,
    hello: &Hello,
    pid: Option<u32>,
    outbox: &Arc<Outbox>,
) -> std::result::Result<u64, Refusal> {
    let mut state = shared.lock();
    if state.finished {
        return Err(Refusal::AgentExited);
    }
    let wants_writer = matches!(hello.mode, Mode::Writer | Mode::Steal);
    if let Some(current) = state.writer {
        if hello.mode == Mode::Writer {
            let pid = state
                .clients
                .iter()
                .find(|c| c.id == current)
                .and_then(|c| c.pid);
            return Err(Refusal::WriterAttached { pid });
        }
        if hello.mode == Mode::Steal {
            state.remove(current, Some(ServerMessage::Detached(DetachReason::Stolen)));
        }
    }
    let id = state.next_id;
    state.next_id += 1;
    if wants_writer {
        state.writer = Some(id);
        state.resize(&shared.master, hello.size);
    }
    outbox.push(
        ServerMessage::Welcome {
            writer: wants_writer,
            size: state.size,
        }
        .encode(),
    );
    let first = match (&state.history, hello.replay) {
        (Some(history), true) => ServerMessage::Output(history.clone()),
        _ => ServerMessage::Repaint(state.repaint()),
    };
    outbox.push(first.encode());
    state.clients.push(Client {
        id,
        read_only: !wants_writer,
        pid,
        outbox: outbox.clone(),
    });
    state.report();
    Ok(id)
}

fn sender_finished(shared: &Shared) {
    let mut senders = shared.senders.lock().unwrap_or_else(|e| e.into_inner());
    *senders = senders.saturating_sub(1);
    shared.senders_done.notify_all();
}

fn send_outbox(shared: &Shared, outbox: &Outbox, stream: &UnixStream) {
    loop {
        let frame = match outbox.next() {
            Next::Frame(frame) => frame,
            Next::Resync => {
                let state = shared.lock();
                outbox.end_resync();
                ServerMessage::Repaint(state.repaint()).encode()
            }
            Next::Closed => break,
        };
        if protocol::send_all(stream.as_fd(), &frame).is_err() {
            break;
        }
    }
    // Also ends the client's input relay, which is reading the same socket.
    let _ = stream.shutdown(std::net::Shutdown::Both);
    sender_finished(shared);
}

fn relay_input(shared: &Shared, id: u64, stream: &mut UnixStream, decoder: &mut Decoder) {
    loop {
        let message = match read_client(stream, decoder) {
            Ok(Some(message)) => message,
            Ok(None) => return,
            Err(err) => {
                tracing::debug!(%err, "dropping an attach client");
                return;
            }
        };
        match message {
            ClientMessage::Input(bytes) => {
                // Written without the lock: a full input queue blocks only this client.
                let is_writer = shared.lock().writer == Some(id);
                if is_writer {
                    if let Err(err) = shared.master.write_all(&bytes) {
                        tracing::debug!(%err, "cannot write to the agent's terminal");
                    }
                }
            }
            ClientMessage::Resize(size) => {
                let mut state = shared.lock();
                if state.writer == Some(id) {
                    state.resize(&shared.master, size);
                }
            }
            ClientMessage::Detach => {
                // The status first, then the client's last frame: once a detached client has
                // returned, `attach.toml` (and so `csa session list`) no longer names it.
                let mut state = shared.lock();
                let outbox = state.take(id);
                state.report();
                if let Some(outbox) = outbox {
                    outbox.push_final(ServerMessage::Detached(DetachReason::Requested).encode());
                }
                return;
            }
            ClientMessage::Hello(_) => {
                tracing::debug!("an attach client said hello twice; dropping it");
                return;
            }
        }
    }
}
