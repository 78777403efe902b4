//! The server in this process, spoken to in the attach protocol directly: the handshake's
//! rules (version, one writer, steal, status), the status callback, and a watcher that stops
//! reading while the agent writes megabytes (the agent must not wait for it).

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use csa_terminal::protocol::{ClientMessage, Decoder, Hello, ServerMessage, VERSION};
use csa_terminal::{
    AgentExit, AttachStatus, DetachReason, Mode, Pty, Refusal, Server, ServerOptions, WindowSize,
};

use crate::harness::{private_dir, DEADLINE};

fn open_dir(path: &std::path::Path) -> OwnedFd {
    rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY
            | rustix::fs::OFlags::DIRECTORY
            | rustix::fs::OFlags::NOFOLLOW
            | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .expect("open the session directory")
}

struct Raw {
    stream: UnixStream,
    decoder: Decoder,
}

impl Raw {
    fn connect(dir: &OwnedFd, path: &std::path::Path) -> Raw {
        let stream = csa_terminal::socket::connect(dir.as_fd(), path).expect("connect");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        Raw {
            stream,
            decoder: Decoder::default(),
        }
    }

    fn send(&mut self, message: ClientMessage) {
        self.stream.write_all(&message.encode()).expect("send");
    }

    fn hello(&mut self, mode: Mode, cols: u16, rows: u16) {
        self.send(ClientMessage::Hello(Hello {
            version: VERSION,
            mode,
            size: WindowSize { cols, rows },
            replay: false,
        }));
    }

    /// The next message; `None` when the server closed the connection.
    fn recv(&mut self) -> Option<ServerMessage> {
        let mut buf = [0u8; 65536];
        loop {
            if let Some(message) = self.decoder.next_server().expect("a valid frame") {
                return Some(message);
            }
            let n = self
                .stream
                .read(&mut buf)
                .expect("read within the deadline");
            if n == 0 {
                return None;
            }
            self.decoder.push(&buf[..n]);
        }
    }

    /// Reads until an output or repaint contains `text`.
    fn wait_output(&mut self, text: &str) {
        let mut seen = Vec::new();
        loop {
            match self.recv() {
                Some(ServerMessage::Output(bytes) | ServerMessage::Repaint(bytes)) => {
                    seen.extend_from_slice(&bytes);
                    if String::from_utf8_lossy(&seen).contains(text) {
                        return;
                    }
                }
                Some(_) => {}
                None => panic!(
                    "closed before {text:?}; got {:?}",
                    String::from_utf8_lossy(&seen)
                ),
            }
        }
    }
}

/// `cat` on a pseudo-terminal under a server.
struct Cat {
    server: Server,
    child: std::process::Child,
    dir: tempfile::TempDir,
    fd: OwnedFd,
    /// A duplicate of the master, to read the terminal's size.
    master_probe: OwnedFd,
    /// The status changes reported to the callback, in order.
    statuses: Arc<Mutex<Vec<AttachStatus>>>,
}

fn serve_cat() -> Cat {
    let dir = private_dir();
    let fd = open_dir(dir.path());
    let pty = Pty::open(WindowSize { cols: 90, rows: 30 }).expect("pty");
    let mut cmd = Command::new("cat");
    pty.configure(&mut cmd).expect("configure");
    let child = cmd.spawn().expect("spawn cat");
    drop(cmd);
    let master_probe = pty.master().as_fd().try_clone_to_owned().expect("dup");
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let recorder = statuses.clone();
    let options = ServerOptions {
        on_status: Some(Box::new(move |status| {
            recorder.lock().expect("lock").push(status);
        })),
        ..ServerOptions::default()
    };
    let server = Server::start(pty.into_master(), fd.as_fd(), dir.path(), options).expect("server");
    Cat {
        server,
        child,
        dir,
        fd,
        master_probe,
        statuses,
    }
}

#[test]
fn the_handshake_rules_and_the_status() {
    let Cat {
        server,
        mut child,
        dir,
        fd,
        master_probe,
        statuses,
    } = serve_cat();
    let status = |writer, watchers| AttachStatus { writer, watchers };

    // Another protocol version is refused by name.
    let mut old = Raw::connect(&fd, dir.path());
    let mut hello = ClientMessage::Hello(Hello {
        version: VERSION,
        mode: Mode::Writer,
        size: WindowSize::DEFAULT,
        replay: false,
    })
    .encode();
    hello[5..7].copy_from_slice(&(VERSION + 1).to_be_bytes());
    old.stream.write_all(&hello).expect("send");
    assert_eq!(
        old.recv(),
        Some(ServerMessage::Refused(Refusal::ProtocolVersion {
            server: VERSION
        }))
    );
    assert_eq!(old.recv(), None);

    // The first writer: welcome at its size (the terminal was 90x30), then a repaint.
    let mut first = Raw::connect(&fd, dir.path());
    first.hello(Mode::Writer, 70, 20);
    assert_eq!(
        first.recv(),
        Some(ServerMessage::Welcome {
            writer: true,
            size: WindowSize { cols: 70, rows: 20 }
        })
    );
    assert!(matches!(first.recv(), Some(ServerMessage::Repaint(_))));
    assert_eq!(server.status(), status(true, 0));
    assert_eq!(
        csa_terminal::query_status(fd.as_fd(), dir.path()).expect("status"),
        status(true, 0)
    );

    // Its input reaches cat (echoed by the terminal, then by cat).
    first.send(ClientMessage::Input(b"ping\r".to_vec()));
    first.wait_output("ping\r\nping");

    // A second writer is refused, naming the writer's pid (this process).
    let mut second = Raw::connect(&fd, dir.path());
    second.hello(Mode::Writer, 80, 24);
    assert_eq!(
        second.recv(),
        Some(ServerMessage::Refused(Refusal::WriterAttached {
            pid: Some(std::process::id())
        }))
    );

    // A watcher: its size is not applied.
    let mut watcher = Raw::connect(&fd, dir.path());
    watcher.hello(Mode::ReadOnly, 200, 60);
    assert_eq!(
        watcher.recv(),
        Some(ServerMessage::Welcome {
            writer: false,
            size: WindowSize { cols: 70, rows: 20 }
        })
    );
    assert_eq!(server.status(), status(true, 1));

    // A thief: the first writer is told and closed.
    let mut thief = Raw::connect(&fd, dir.path());
    thief.hello(Mode::Steal, 100, 40);
    assert!(matches!(
        thief.recv(),
        Some(ServerMessage::Welcome { writer: true, .. })
    ));
    loop {
        match first.recv() {
            Some(ServerMessage::Detached(reason)) => {
                assert_eq!(reason, DetachReason::Stolen);
                break;
            }
            Some(_) => {}
            None => panic!("closed without Detached"),
        }
    }
    assert_eq!(first.recv(), None);

    // The watcher's input is ignored (the client does not send it, and the server would not
    // take it); its detach is confirmed, then the connection closed. Detach comes after the
    // input on the same connection, so the input has been handled once it is confirmed.
    watcher.send(ClientMessage::Input(b"secret\r".to_vec()));
    watcher.send(ClientMessage::Resize(WindowSize { cols: 20, rows: 5 }));
    watcher.send(ClientMessage::Detach);
    loop {
        match watcher.recv() {
            Some(ServerMessage::Detached(reason)) => {
                assert_eq!(reason, DetachReason::Requested);
                break;
            }
            Some(_) => {}
            None => panic!("closed without Detached"),
        }
    }
    assert_eq!(server.status(), status(true, 0));
    thief.send(ClientMessage::Input(b"pong\r".to_vec()));
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("pong\r\npong") {
        match thief.recv() {
            Some(ServerMessage::Output(bytes)) => seen.extend_from_slice(&bytes),
            Some(_) => {}
            None => panic!("closed"),
        }
    }
    assert!(
        !String::from_utf8_lossy(&seen).contains("secret"),
        "{seen:?}"
    );
    assert_eq!(
        WindowSize::of_terminal(&master_probe).expect("size"),
        WindowSize {
            cols: 100,
            rows: 40
        },
        "a watcher's size was applied"
    );

    // The agent ends: the remaining client gets its exit status.
    thief.send(ClientMessage::Input(b"\x04".to_vec()));
    let exit = AgentExit::from_status(child.wait().expect("wait for cat"));
    assert_eq!(exit, AgentExit::Code(0));
    server.finish(exit, Duration::from_secs(1));
    loop {
        match thief.recv() {
            Some(ServerMessage::Exit(got)) => {
                assert_eq!(got, exit);
                break;
            }
            Some(_) => {}
            None => panic!("closed without Exit"),
        }
    }
    assert!(!dir.path().join("attach.sock").exists());
    assert_eq!(
        *statuses.lock().expect("lock"),
        [
            status(true, 0),
            status(true, 1),
            status(true, 0),
            status(false, 0)
        ]
    );
}

#[test]
fn a_watcher_that_stops_reading_does_not_hold_up_the_agent() {
    let dir = private_dir();
    let fd = open_dir(dir.path());
    let pty = Pty::open(WindowSize::DEFAULT).expect("pty");
    // Waits for a line, then writes 4 MiB (more than the socket's buffers and the outbox limit
    // together) of NUL bytes, which the terminal model skips quickly.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "read go; head -c 4194304 /dev/zero; echo END"]);
    pty.configure(&mut cmd).expect("configure");
    let mut child = cmd.spawn().expect("spawn");
    drop(cmd);
    let server = Server::start(
        pty.into_master(),
        fd.as_fd(),
        dir.path(),
        ServerOptions::default(),
    )
    .expect("server");

    let mut stalled = Raw::connect(&fd, dir.path());
    stalled.hello(Mode::ReadOnly, 80, 24);
    let mut writer = Raw::connect(&fd, dir.path());
    writer.hello(Mode::Writer, 80, 24);
    assert!(matches!(writer.recv(), Some(ServerMessage::Welcome { .. })));
    writer.send(ClientMessage::Input(b"go\r".to_vec()));

    // The agent finishes while the watcher reads nothing.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = rx
        .recv_timeout(DEADLINE)
        .expect("the agent was held up by a watcher that does not read")
        .expect("wait");
    server.finish(AgentExit::from_status(status), Duration::from_secs(1));

    // The watcher, reading at last, got a bounded backlog, a repaint in place of what it
    // missed, and the exit status.
    let mut output_bytes = 0;
    let mut repaints = 0;
    let mut exit = None;
    while let Some(message) = stalled.recv() {
        match message {
            ServerMessage::Output(bytes) => output_bytes += bytes.len(),
            ServerMessage::Repaint(_) => repaints += 1,
            ServerMessage::Exit(code) => exit = Some(code),
            _ => {}
        }
    }
    assert_eq!(exit, Some(AgentExit::Code(0)));
    assert!(repaints >= 2, "no resync repaint ({repaints} repaints)");
    assert!(
        output_bytes < 2 << 20,
        "{output_bytes} bytes of output were kept for a stalled watcher"
    );
    drop(writer);
}
