//! Reference material (issue 12): the man pages' NAME, EXIT STATUS, ENVIRONMENT and FILES
//! sections, and dynamic shell completion of session ids.

use std::collections::BTreeSet;
use std::process::Command;

use crate::exit_codes::{documented, read, Code};
use crate::harness::TestEnv;

fn stdout(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout.clone()).expect("utf8")
}

/// The `.TP` tags of one `.SH` section of a roff page, unescaped.
fn section_tags(page: &str, section: &str) -> Vec<String> {
    let start = page
        .find(&format!(".SH {section}\n"))
        .unwrap_or_else(|| panic!("no {section} section"));
    let body = &page[start..];
    let body = &body[..body[4..].find("\n.SH ").map_or(body.len(), |i| i + 4)];
    let lines: Vec<&str> = body.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0] == ".TP")
        .map(|w| {
            w[1].replace("\\fB", "")
                .replace("\\fR", "")
                .replace("\\-", "-")
        })
        .collect()
}

/// Regression: the man pages' NAME line read "csa - csa: a session manager…", and they had no
/// EXIT STATUS, ENVIRONMENT or FILES section. Every page now has all three, EXIT STATUS with
/// exactly the codes of docs/cli.md's table.
#[test]
fn man_pages_have_exit_status_environment_and_files() {
    let env = TestEnv::new();
    let page = stdout(&env.run(&["man"]));
    assert!(
        page.contains("\n.SH NAME\ncsa \\- session manager for coding sub\\-agents\n"),
        "{page}"
    );
    let dir = env.project.join("man1");
    stdout(&env.run(&["man", "--dir", dir.to_str().expect("utf8")]));
    let documented = documented(&read("docs/cli.md"));
    let mut pages = 0;
    for entry in fs_err::read_dir(&dir).expect("ls") {
        let path = entry.expect("entry").path();
        let page = fs_err::read_to_string(&path).expect("read");
        let name = path.display();
        let codes: BTreeSet<Code> = section_tags(&page, "\"EXIT STATUS\"")
            .iter()
            .map(|tag| match tag.as_str() {
                "128+N" => Code::Signal,
                n => Code::Fixed(n.parse().unwrap_or_else(|_| panic!("{name}: {tag}"))),
            })
            .collect();
        let without_agent: BTreeSet<Code> = documented
            .iter()
            .copied()
            .filter(|c| *c != Code::Agent)
            .collect();
        assert_eq!(
            codes, without_agent,
            "{name}: EXIT STATUS and docs/cli.md differ"
        );
        let vars = section_tags(&page, "ENVIRONMENT");
        for var in [
            "CSA_STATE_DIR",
            "XDG_STATE_HOME",
            "NO_COLOR",
            "CLICOLOR_FORCE",
            "RUST_LOG",
            "CSA_SESSION_ID",
            "CSA_SESSION_DIR",
            "CSA_DEPTH",
            "CSA_PROJECT_ROOT",
            "CSA_PARENT_SESSION",
        ] {
            assert!(
                vars.iter().any(|v| v == var),
                "{name}: ENVIRONMENT lacks {var}"
            );
        }
        let files = section_tags(&page, "FILES");
        assert!(
            files.iter().any(|f| f == "ROOT/KEY/sessions/ULID/"),
            "{name}: {files:?}"
        );
        // The order of man-pages(7): options, then these, then VERSION.
        let at = |s: &str| page.find(s).unwrap_or_else(|| panic!("{name}: no {s}"));
        assert!(at(".SH OPTIONS") < at(".SH \"EXIT STATUS\""));
        assert!(at(".SH FILES") < at(".SH VERSION"));
        pages += 1;
    }
    assert!(pages > 10, "{pages} pages");
    if Command::new("man")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let out = Command::new("man")
            .arg("-l")
            .arg(dir.join("csa-session-wait.1"))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "200")
            .output()
            .expect("man -l");
        let text = stdout(&out);
        for heading in ["EXIT STATUS", "ENVIRONMENT", "FILES"] {
            assert!(
                text.contains(heading),
                "rendered page lacks {heading}: {text}"
            );
        }
    } else {
        eprintln!("skipped rendering: man is not installed");
    }
}

/// Regression: shell completion did not complete session ids (the scripts were static). With
/// clap_complete's dynamic completion (`COMPLETE=SHELL csa`), a SESSION argument completes to
/// the ids that start with what was typed, in any case.
#[test]
fn completion_completes_session_ids_and_prefixes() {
    let env = TestEnv::new();
    let ended: Vec<String> = (0..3).map(|_| env.session().id).collect();
    let csa = assert_cmd::cargo::cargo_bin!("csa");
    let complete = |words: &[&str]| -> Vec<String> {
        let out = Command::new(csa)
            .env_clear()
            .env("COMPLETE", "fish")
            .env("CSA_STATE_DIR", &env.state_root)
            .arg("--")
            .args(words)
            .output()
            .expect("complete");
        stdout(&out)
            .lines()
            .map(|l| l.split('\t').next().unwrap_or_default().to_owned())
            .collect()
    };
    let mut all = ended.clone();
    all.sort();
    all.reverse();
    let sessions: Vec<String> = complete(&["csa", "session", "wait", ""])
        .into_iter()
        .filter(|c| !c.starts_with('-'))
        .collect();
    assert_eq!(sessions, all, "every session (and the flags)");
    let id = &ended[1];
    // The shortest prefix that tells it from the others (made within a millisecond, they
    // share most of their characters), typed in lower case.
    let shared = ended
        .iter()
        .filter(|o| *o != id)
        .map(|o| {
            id.chars()
                .zip(o.chars())
                .take_while(|(a, b)| a == b)
                .count()
        })
        .max()
        .unwrap_or(0);
    let prefix = id[..=shared].to_ascii_lowercase();
    assert_eq!(
        complete(&["csa", "session", "kill", &prefix]),
        [id.as_str()]
    );
    assert_eq!(complete(&["csa", "session", "logs", id]), [id.as_str()]);
    assert!(complete(&["csa", "session", "result", "nope"]).is_empty());
    assert_eq!(
        complete(&["csa", "run", "--parent", &prefix]),
        [id.as_str()],
        "--parent SESSION too"
    );

    // In a real bash, through the script `COMPLETE=bash csa` prints.
    if Command::new("bash").arg("--version").output().is_err() {
        eprintln!("skipped: bash is not installed");
        return;
    }
    let dir = std::path::Path::new(csa).parent().expect("bin dir");
    let script = format!(
        "source <(COMPLETE=bash csa)\n\
         COMP_WORDS=(csa session wait {prefix}); COMP_CWORD=3; COMP_TYPE=9; COMP_LINE='csa session wait {prefix}'\n\
         _clap_complete_csa csa {prefix} wait\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n"
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env_clear()
        .env(
            "PATH",
            format!(
                "{}:{}",
                dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("CSA_STATE_DIR", &env.state_root)
        .output()
        .expect("bash");
    assert_eq!(stdout(&out).trim(), id.as_str(), "{out:?}");
}
