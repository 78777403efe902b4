//! Real full-screen programs, when installed: vim edits a file, less pages through one.

use crate::harness::{have, private_dir, Supervisor};

#[test]
fn vim_edits_a_file_through_an_attached_terminal() {
    if !have("vim", "vim_edits_a_file_through_an_attached_terminal") {
        return;
    }
    let work = private_dir();
    let file = work.path().join("notes.txt");
    let mut sup = Supervisor::start(
        80,
        24,
        &[
            "vim",
            "-u",
            "NONE",
            "-N",
            "-n",
            file.to_str().expect("utf-8"),
        ],
    );
    let mut client = crate::harness::attach(&sup, 80, 24, &[]);
    client.wait_text("notes.txt");
    client.send(b"ihello from csa\x1b");
    client.wait_text("hello from csa");
    client.send(b":wq\r");
    assert_eq!(client.wait_exit(), 0, "{}", client.output());
    assert_eq!(sup.wait_exit().code(), Some(0));
    assert_eq!(
        fs_err::read_to_string(&file).expect("the file vim wrote"),
        "hello from csa\n"
    );
}

#[test]
fn less_pages_through_a_file_and_quits() {
    if !have("less", "less_pages_through_a_file_and_quits") {
        return;
    }
    let work = private_dir();
    let file = work.path().join("lines.txt");
    let text: String = (1..=100).map(|i| format!("line {i:03}\n")).collect();
    fs_err::write(&file, text).expect("write");
    let mut sup = Supervisor::start(80, 24, &["less", file.to_str().expect("utf-8")]);
    let mut client = crate::harness::attach(&sup, 80, 24, &[]);
    client.wait_text("line 001");
    assert!(!client.text().contains("line 050"), "{}", client.text());
    // Jump to the end.
    client.send(b"G");
    client.wait_text("line 100");
    assert!(!client.text().contains("line 001"), "{}", client.text());
    client.send(b"q");
    assert_eq!(client.wait_exit(), 0, "{}", client.output());
    assert_eq!(sup.wait_exit().code(), Some(0));
}
