//! One writer at a time: a read-only watcher sees the output but cannot type, a second writer
//! is refused, and `--steal` takes the writer's place.

use crate::harness::{curses_program, have_curses, private_dir, Supervisor};

#[test]
fn a_read_only_watcher_sees_output_and_cannot_type() {
    if !have_curses("a_read_only_watcher_sees_output_and_cannot_type") {
        return;
    }
    let work = private_dir();
    let program = curses_program(work.path());
    let mut sup = Supervisor::start(80, 24, &["python3", program.to_str().expect("utf-8")]);
    let mut writer = crate::harness::attach(&sup, 80, 24, &[]);
    writer.wait_text("READY");
    sup.wait_status(true, 0);

    // A watcher of another size: it gets the screen, and its size is not applied. (A watcher
    // smaller than the writer would see the repaint's bottom rows scroll the top ones away.)
    let mut watcher = crate::harness::attach(&sup, 100, 30, &["--read-only"]);
    watcher.wait_text("SIZE 80x24");
    sup.wait_status(true, 1);

    // The writer types: both see it.
    writer.send(b"k");
    writer.wait_text("KEYS: k");
    watcher.wait_text("KEYS: k");

    // The watcher types, then detaches: the supervisor has handled its input (same
    // connection, in order) once the detach is confirmed.
    watcher.send(b"xyz");
    watcher.send(b"\x1cd");
    assert_eq!(watcher.wait_exit(), 0, "{}", watcher.output());
    sup.wait_status(true, 0);

    // The next key the program reads is the writer's: the watcher's never reached it.
    writer.send(b"m");
    writer.wait_text("KEYS: km");
    assert!(!writer.text().contains("xyz"), "{}", writer.text());
    assert!(writer.text().contains("SIZE 80x24"), "{}", writer.text());

    writer.send(b"q");
    assert_eq!(writer.wait_exit(), 7);
    assert_eq!(sup.wait_exit().code(), Some(7));
}

#[test]
fn a_second_writer_is_refused_and_steal_takes_over() {
    if !have_curses("a_second_writer_is_refused_and_steal_takes_over") {
        return;
    }
    let work = private_dir();
    let program = curses_program(work.path());
    let mut sup = Supervisor::start(80, 24, &["python3", program.to_str().expect("utf-8")]);
    let mut first = crate::harness::attach(&sup, 80, 24, &[]);
    first.wait_text("READY");
    sup.wait_status(true, 0);

    let mut second = crate::harness::attach(&sup, 80, 24, &[]);
    assert_eq!(second.wait_exit(), 75, "{}", second.output());
    let refusal = second.output();
    assert!(refusal.contains("is attached as the writer"), "{refusal}");
    assert!(refusal.contains("--steal"), "{refusal}");
    assert!(!second.is_raw(), "the refused client left raw mode on");

    // The first writer is undisturbed.
    first.send(b"1");
    first.wait_text("KEYS: 1");

    // A steal: the first writer is told and detached; the thief's size applies.
    let mut thief = crate::harness::attach(&sup, 70, 20, &["--steal"]);
    thief.wait_text("SIZE 70x20");
    assert_eq!(first.wait_exit(), 0, "{}", first.output());
    assert!(
        first.output().contains("[detached: Stolen]"),
        "{}",
        first.output()
    );
    thief.send(b"2");
    thief.wait_text("KEYS: 12");
    sup.wait_status(true, 0);

    thief.send(b"q");
    assert_eq!(thief.wait_exit(), 7);
    assert_eq!(sup.wait_exit().code(), Some(7));
}
