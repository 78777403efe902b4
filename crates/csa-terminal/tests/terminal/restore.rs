//! The client's terminal is restored on every way out: the agent's exit, detach, SIGTERM and
//! SIGHUP delivered to the client, and the supervisor's death. A shell on the client's
//! terminal prints `stty -g` before and after the client; the two must be equal, and the
//! terminal must have been in raw mode in between (so there was something to restore).

use crate::harness::{curses_program, have_curses, private_dir, wait_dead, Supervisor, Terminal};

/// `stty -g` lines in the output of a shell on the terminal, in order.
fn stty_lines(output: &str) -> Vec<String> {
    output
        .lines()
        .map(|l| l.trim_matches(|c: char| c == '\r' || c.is_whitespace()))
        .filter_map(|l| l.split_once("STTY=").map(|(_, v)| v.to_owned()))
        .collect()
}

/// Runs the client in the foreground of a shell that prints the modes around it.
fn foreground(sup: &Supervisor) -> Terminal {
    let dir = sup.path().to_str().expect("utf-8");
    Terminal::spawn(
        80,
        24,
        "echo STTY=$(stty -g); \"$@\"; echo RC=$?; echo STTY=$(stty -g)",
        &[crate::harness::BIN, "attach", "--dir", dir],
    )
}

/// Runs the client as a job of a shell without job control (so it stays in the terminal's
/// foreground process group), printing its pid so that the test can signal it.
fn signalled(sup: &Supervisor) -> Terminal {
    let dir = sup.path().to_str().expect("utf-8");
    Terminal::spawn(
        80,
        24,
        "echo STTY=$(stty -g); \"$@\" </dev/tty & echo PID=$!; wait $!; echo RC=$?; echo STTY=$(stty -g)",
        &[crate::harness::BIN, "attach", "--dir", dir],
    )
}

fn pid_of(term: &mut Terminal) -> i32 {
    term.wait_raw("PID=");
    let output = term.output();
    let after = &output[output.find("PID=").expect("PID=") + 4..];
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().expect("pid")
}

fn assert_restored(term: &mut Terminal, code: i32) {
    term.wait_raw(&format!("RC={code}"));
    assert_eq!(term.wait_exit(), 0, "{}", term.output());
    let lines = stty_lines(&term.output());
    assert_eq!(lines.len(), 2, "{}", term.output());
    assert_eq!(lines[0], lines[1], "the terminal's modes changed");
    assert!(!lines[0].is_empty());
}

#[test]
fn the_terminal_is_restored_after_detach_signals_and_exit() {
    if !have_curses("the_terminal_is_restored_after_detach_signals_and_exit") {
        return;
    }
    let work = private_dir();
    let program = curses_program(work.path());
    let mut sup = Supervisor::start(80, 24, &["python3", program.to_str().expect("utf-8")]);

    // Detach.
    let mut term = foreground(&sup);
    term.wait_text("READY");
    assert!(term.is_raw(), "raw mode was not set while attached");
    term.send(b"\x1cd");
    assert_restored(&mut term, 0);
    sup.wait_status(false, 0);

    // SIGTERM and SIGHUP to the client: it restores, then dies of the signal.
    for (signal, code) in [
        (rustix::process::Signal::TERM, 143),
        (rustix::process::Signal::HUP, 129),
    ] {
        let mut term = signalled(&sup);
        let pid = pid_of(&mut term);
        term.wait_text("READY");
        term.wait_for("raw mode", |t| t.is_raw());
        sup.wait_status(true, 0);
        rustix::process::kill_process(rustix::process::Pid::from_raw(pid).expect("pid"), signal)
            .expect("signal the client");
        assert_restored(&mut term, code);
        sup.wait_status(false, 0);
    }

    // The agent's exit: the client exits with its status.
    let mut term = foreground(&sup);
    term.wait_text("READY");
    term.send(b"q");
    assert_restored(&mut term, 7);
    assert_eq!(sup.wait_exit().code(), Some(7));
}

#[test]
fn when_the_supervisor_dies_the_agent_is_hung_up_and_the_client_restores() {
    if !have_curses("when_the_supervisor_dies_the_agent_is_hung_up_and_the_client_restores") {
        return;
    }
    let work = private_dir();
    let program = curses_program(work.path());
    let mut sup = Supervisor::start(80, 24, &["python3", program.to_str().expect("utf-8")]);
    let mut term = foreground(&sup);
    term.wait_text("READY");
    sup.wait_status(true, 0);
    sup.kill_9();
    assert_restored(&mut term, 1);
    assert!(
        term.output()
            .contains("connection to the supervisor was lost"),
        "{}",
        term.output()
    );
    // The master closed with the supervisor: the kernel sent SIGHUP to the agent.
    wait_dead(sup.agent);
}
