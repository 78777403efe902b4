//! A full-screen curses program under a supervisor: its screen appears, keys and `^C` reach
//! it, a resize reaches it, detach and re-attach repaint the current screen, and the
//! recordings reproduce what it drew.

use std::process::{Command, Stdio};

use csa_terminal::asciicast;

use crate::harness::{curses_program, have_curses, private_dir, Supervisor};

#[test]
fn a_curses_program_runs_attached_and_is_recorded() {
    if !have_curses("a_curses_program_runs_attached_and_is_recorded") {
        return;
    }
    let work = private_dir();
    let program = curses_program(work.path());
    let program = program.to_str().expect("utf-8");

    // The program is one that needs a terminal: without one it refuses.
    let refused = Command::new("python3")
        .arg(program)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run python3");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refusing"));

    let mut sup = Supervisor::start(100, 30, &["python3", program]);

    // Attach: the terminal takes the client's size, the program redraws at it.
    let mut client = crate::harness::attach(&sup, 80, 24, &[]);
    client.wait_text("SIZE 80x24");
    client.wait_text("READY");
    sup.wait_status(true, 0);
    assert!(client.is_raw(), "the client's terminal is not in raw mode");

    // Keys reach it; ^C reaches it as SIGINT through its own terminal.
    client.send(b"abc");
    client.wait_text("KEYS: abc");
    client.send(b"\x03");
    client.wait_text("KEYS: abc<INT>");

    // A resize of the client's terminal reaches it (SIGWINCH on both terminals).
    client.resize(100, 40);
    client.wait_text("SIZE 100x40");

    // Detach with Ctrl-\ d: the client exits 0, the program runs on.
    client.send(b"\x1cd");
    assert_eq!(client.wait_exit(), 0, "{}", client.output());
    assert!(client.output().contains("[detached: Requested]"));
    sup.wait_status(false, 0);

    // Re-attach at the same size: no resize, so no SIGWINCH and no redraw by the program;
    // what appears is the supervisor's repaint of the current screen.
    let mut again = crate::harness::attach(&sup, 100, 40, &[]);
    again.wait_text("KEYS: abc<INT>");
    again.wait_text("SIZE 100x40");
    assert!(
        again.raw.windows(6).any(|w| w == b"\x1b[H\x1b[J"),
        "no repaint (clear and redraw) was received"
    );
    // Typing reaches it after the re-attach.
    again.send(b"d");
    again.wait_text("KEYS: abc<INT>d");

    // q: the program exits 7; the client exits with the program's status.
    again.send(b"q");
    assert_eq!(again.wait_exit(), 7, "{}", again.output());
    assert_eq!(sup.wait_exit().code(), Some(7));
    assert!(
        !sup.path().join("attach.sock").exists(),
        "the socket outlived the session"
    );

    // output.cast parses, and its output events are output.log, byte for byte.
    let log = sup.log();
    let cast = asciicast::parse(&sup.cast()).expect("output.cast parses");
    assert_eq!((cast.header.width, cast.header.height), (100, 30));
    assert_eq!(cast.header.term.as_deref(), Some("xterm-256color"));
    assert_eq!(
        cast.output().as_bytes(),
        log.as_slice(),
        "the recording's output differs from output.log"
    );
    let resizes: Vec<String> = cast.resizes().iter().map(|s| s.to_string()).collect();
    assert_eq!(resizes, ["80x24", "100x40"]);

    // Replayed event by event (resizes included), the recording shows the screens seen.
    let mut model = vt100::Parser::new(
        std::num::NonZeroU16::new(30).expect("rows"),
        std::num::NonZeroU16::new(100).expect("cols"),
        0,
    );
    let mut seen_final_keys = false;
    for event in &cast.events {
        match event.code.as_str() {
            "o" => model.process(event.data.as_bytes()),
            "r" => {
                let (cols, rows) = event.data.split_once('x').expect("COLSxROWS");
                model.set_size(rows.parse().expect("rows"), cols.parse().expect("cols"));
            }
            other => panic!("unexpected event code {other}"),
        }
        let text = model.screen().contents();
        seen_final_keys |= text.contains("KEYS: abc<INT>d") && text.contains("SIZE 100x40");
    }
    assert!(
        seen_final_keys,
        "replaying the recording never showed the last screen"
    );

    // The log as text (csa session logs of an interactive session).
    let text = String::from_utf8(csa_terminal::strip_escapes(&log)).expect("utf-8");
    assert!(
        text.contains("SIZE 80x24") && text.contains("READY"),
        "{text:?}"
    );
    assert!(!text.contains('\x1b'), "{text:?}");
}

#[test]
fn replay_gives_the_first_client_every_byte_from_the_start() {
    // A line-oriented program that writes before anyone attaches, then waits for input.
    let mut sup = Supervisor::start(
        80,
        24,
        &[
            "sh",
            "-c",
            "printf 'early \\033[1mbold\\033[0m line\\n'; read x; echo \"got $x\"",
        ],
    );
    let deadline = std::time::Instant::now() + crate::harness::DEADLINE;
    while !String::from_utf8_lossy(&sup.log()).contains("line") {
        assert!(
            std::time::Instant::now() < deadline,
            "the program wrote nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut client = crate::harness::attach(&sup, 80, 24, &["--replay"]);
    client.wait_text("early bold line");
    client.send(b"yes\r");
    client.wait_text("got yes");
    assert_eq!(client.wait_exit(), 0, "{}", client.output());
    assert_eq!(sup.wait_exit().code(), Some(0));
    // Byte for byte: what the client wrote to its terminal starts with the whole log.
    let log = sup.log();
    assert!(
        client.raw.starts_with(&log),
        "the client's output {:?} does not start with output.log {:?}",
        client.output(),
        String::from_utf8_lossy(&log)
    );
}

#[test]
fn the_agents_death_by_a_signal_reaches_the_client() {
    let mut sup = Supervisor::start(80, 24, &["sh", "-c", "echo waiting; read x; kill -TERM $$"]);
    let mut client = crate::harness::attach(&sup, 80, 24, &["--replay"]);
    client.wait_text("waiting");
    client.send(b"\r");
    // As a shell reports a child killed by SIGTERM: 128 + 15.
    assert_eq!(client.wait_exit(), 143, "{}", client.output());
    assert!(
        client.output().contains("Signal(15)"),
        "{}",
        client.output()
    );
    assert_eq!(sup.wait_exit().code(), Some(143));
}

#[test]
fn the_detach_prefix_can_still_send_ctrl_backslash() {
    // The agent puts its terminal in raw mode and shows the next three bytes it reads.
    let mut sup = Supervisor::start(
        80,
        24,
        &[
            "sh",
            "-c",
            "stty raw -echo; echo ready; od -An -c -N 3; stty sane",
        ],
    );
    let mut client = crate::harness::attach(&sup, 80, 24, &["--replay"]);
    client.wait_text("ready");
    // Ctrl-\ Ctrl-\ is one Ctrl-\; Ctrl-\ x is both.
    client.send(b"\x1c\x1c");
    client.send(b"\x1cx");
    client.wait_text("034 034   x");
    assert_eq!(client.wait_exit(), 0, "{}", client.output());
    assert_eq!(sup.wait_exit().code(), Some(0));
}
