//! Command-line habits people bring from git: `-C DIR`, and a `--help` that fits on a screen
//! with the long text one `help COMMAND` away.

mod common;

use common::Env;

#[test]
fn dash_c_runs_as_if_started_in_the_directory_given() {
    let env = Env::with_remote(&[("a.txt", "alpha\n"), ("sub/x.txt", "x\n")]);
    env.clone_ws();
    let sub = env.w("sub");
    let sub = sub.to_str().expect("a UTF-8 temporary path");
    // The temporary root is not a workspace: without -C, nothing is found from there.
    let outside = env.run_in(env.root(), ["ls", "--json"]);
    assert_ne!(outside.code, 0, "ls outside any workspace: {outside}");
    // With it, the workspace is found from DIR, and a path is relative to DIR.
    let listed = env.run_in(env.root(), ["-C", sub, "ls", "--json"]);
    assert_eq!(listed.code, 0, "{listed}");
    let paths: Vec<String> = listed
        .json()
        .as_array()
        .expect("an array")
        .iter()
        .map(|e| e["path"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(paths, ["sub/x.txt"], "{listed}");
    let shown = env.run_in(env.root(), ["-C", sub, "show", "x.txt"]);
    assert_eq!((shown.code, shown.out()), (0, "x\n".to_owned()), "{shown}");
    // A directory that cannot be entered is a usage error, said as such.
    let missing = env.root().join("no-such-dir");
    let bad = env.run_in(
        env.root(),
        ["-C", missing.to_str().expect("UTF-8"), "status"],
    );
    assert_eq!(bad.code, 2, "{bad}");
    assert!(
        bad.stderr
            .starts_with("cachesync: error: cannot change to ")
            && bad.stderr.contains("no-such-dir"),
        "{bad}"
    );
}

#[test]
fn help_gives_one_short_line_per_command_and_the_long_text_on_demand() {
    let env = Env::new();
    let help = env.run_in(env.root(), ["--help"]);
    assert_eq!(help.code, 0, "{help}");
    let out = help.out();
    let commands: Vec<&str> = out
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(commands.len() >= 25, "the commands listed:\n{out}");
    for line in &commands {
        // A line of its own: two spaces, the name, the text; no line carried over.
        assert!(
            line.starts_with("  ") && !line.starts_with("   "),
            "a command's text runs over more than one line:\n{out}"
        );
        assert!(line.len() <= 90, "too long for one line: {line:?}");
    }
    assert!(
        commands
            .iter()
            .any(|l| l.trim_start().starts_with("check ")),
        "{out}"
    );
    // The long text is still there, one command at a time.
    for args in [&["help", "check"][..], &["check", "--help"]] {
        let long = env.run_in(env.root(), args);
        assert_eq!(long.code, 0, "{long}");
        assert!(
            long.out().contains("7 conflicts, 3 disconnected"),
            "cachesync {args:?}:\n{long}"
        );
    }
    let short = env.run_in(env.root(), ["check", "-h"]);
    assert!(!short.out().contains("7 conflicts"), "{short}");
}
