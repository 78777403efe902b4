//! `--format json` everywhere (issue 6): every command that prints data accepts it and
//! docs/json.md documents it; `csa session logs --format json` is a JSON Lines stream.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use clap::CommandFactory;

use crate::harness::TestEnv;

/// Commands whose output is not data (a shell script, a man page): no `--format`.
const NO_FORMAT: [&str; 1] = ["csa completions"];

/// Every visible leaf command, as typed (`csa session list`), with its clap definition.
fn leaf_commands() -> Vec<(String, clap::Command)> {
    fn walk(cmd: &clap::Command, prefix: &str, out: &mut Vec<(String, clap::Command)>) {
        let name = format!("{prefix}{}", cmd.get_name());
        let subs: Vec<_> = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
            .collect();
        if subs.is_empty() {
            out.push((name.clone(), cmd.clone()));
        }
        for sub in subs {
            walk(sub, &format!("{name} "), out);
        }
    }
    let mut out = Vec::new();
    walk(&csa_cli::cli::Cli::command(), "", &mut out);
    out
}

#[test]
fn every_command_accepts_format_json_and_json_md_documents_it() {
    let docs = fs_err::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/json.md"))
        .expect("docs/json.md");
    let leaves = leaf_commands();
    assert!(leaves.len() >= 14, "{}", leaves.len());
    for (name, cmd) in leaves {
        if NO_FORMAT.contains(&name.as_str()) {
            continue;
        }
        let format = cmd
            .get_arguments()
            .find(|a| a.get_id() == "format")
            .unwrap_or_else(|| panic!("{name} has no --format"));
        let values: Vec<String> = format
            .get_possible_values()
            .iter()
            .map(|v| v.get_name().to_owned())
            .collect();
        assert!(values.contains(&"json".to_owned()), "{name}: {values:?}");
        assert!(
            docs.contains(&format!("## `{name}")),
            "docs/json.md has no section for {name}"
        );
    }
}

/// Runs a foreground `csa run -- sh -c SCRIPT` and returns the session id.
fn run_sh(env: &TestEnv, script: &str) -> String {
    let out = env.run(&["run", "--", "sh", "-c", script]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("csa: session "))
        .expect("session id on stderr")
        .trim()
        .to_owned()
}

/// Parses JSON Lines into (offset, text, eol), checking the session and stream fields.
fn lines(stdout: &[u8], id: &str, stream: &str) -> Vec<(u64, String, bool)> {
    String::from_utf8(stdout.to_vec())
        .expect("utf8")
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("one object per line");
            assert_eq!(v["session_id"], id);
            assert_eq!(v["stream"], stream);
            (
                v["offset"].as_u64().expect("offset"),
                v["text"].as_str().expect("text").to_owned(),
                v["eol"].as_bool().expect("eol"),
            )
        })
        .collect()
}

#[test]
fn logs_json_is_one_object_per_line_with_byte_offsets() {
    let env = TestEnv::new();
    let id = run_sh(&env, "printf 'a\\nbé\\n\\npartial'; printf 'oops\\n' >&2");
    let out = env.run(&["session", "logs", &id, "--format", "json"]);
    assert!(out.status.success(), "{out:?}");
    let want = vec![
        (0, "a".to_owned(), true),
        (2, "bé".to_owned(), true),
        (6, String::new(), true),
        (7, "partial".to_owned(), false),
    ];
    assert_eq!(lines(&out.stdout, &id, "stdout"), want);
    // The offsets are those of the raw log.
    let raw = env.run(&["session", "logs", &id]).stdout;
    assert_eq!(&raw[7..], b"partial");

    let out = env.run(&["session", "logs", &id, "--format", "json", "--tail", "2"]);
    assert_eq!(lines(&out.stdout, &id, "stdout"), want[2..]);

    let out = env.run(&["session", "logs", &id, "--format", "json", "--stderr"]);
    assert_eq!(
        lines(&out.stdout, &id, "stderr"),
        [(0, "oops".to_owned(), true)]
    );
}

/// The stream is live: a line is printed as soon as it is complete, while the agent still runs
/// (it blocks on a FIFO the test opens only after reading that line), and the unterminated
/// tail comes when the session ends.
#[test]
fn logs_follow_json_streams_each_line_as_it_completes() {
    let env = TestEnv::new();
    let fifo = env.project.join("go");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let out = env.run(&[
        "run",
        "--detach",
        "--",
        "sh",
        "-c",
        "echo first; read x < go; printf 'second\\nlast'",
    ]);
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    let mut follow = env
        .csa(&["session", "logs", &id, "--follow", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut reader = BufReader::new(follow.stdout.take().expect("stdout"));
    let mut first = String::new();
    reader.read_line(&mut first).expect("read");
    assert_eq!(
        lines(first.as_bytes(), &id, "stdout"),
        [(0, "first".to_owned(), true)]
    );
    // Only now may the agent go on.
    fs_err::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("open fifo")
        .write_all(b"go\n")
        .expect("release the agent");
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut rest).expect("read");
    let status = follow.wait().expect("wait");
    assert!(status.success());
    assert_eq!(
        lines(&rest, &id, "stdout"),
        [
            (6, "second".to_owned(), true),
            (13, "last".to_owned(), false)
        ]
    );
}
