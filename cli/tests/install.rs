//! `make install` and `make uninstall`, run into a temporary PREFIX with the binary under test
//! (`install-files`, what `install` does once its optimised build is made).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn make(target: &str, prefix: &Path) -> std::process::Output {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    Command::new("make")
        .arg("--no-print-directory")
        .arg("-C")
        .arg(&repo)
        .arg(target)
        .arg(format!("PREFIX={}", prefix.display()))
        .arg(format!("INSTALL_BIN={}", common::binary().display()))
        .output()
        .expect("make runs")
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("read a directory") {
            let p = e.expect("an entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(p.strip_prefix(root).expect("under the root").to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn install_puts_the_binary_completions_man_pages_and_units_under_prefix_and_uninstall_takes_them_away(
) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let prefix = tmp.path().join("prefix");
    let out = make("install-files", &prefix);
    assert!(
        out.status.success(),
        "make install-files: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = Command::new(prefix.join("bin/cachesync"))
        .arg("--version")
        .output()
        .expect("the installed binary runs");
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("cachesync "));

    // Completions that the shells take: bash registers one for the command.
    let bash = prefix.join("share/bash-completion/completions/cachesync");
    let registered = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source '{}' && complete -p cachesync",
            bash.display()
        ))
        .output()
        .expect("bash runs");
    assert!(
        String::from_utf8_lossy(&registered.stdout).contains("cachesync"),
        "bash: {}",
        String::from_utf8_lossy(&registered.stderr)
    );
    for (file, says) in [
        ("share/zsh/site-functions/_cachesync", "#compdef cachesync"),
        (
            "share/fish/vendor_completions.d/cachesync.fish",
            "complete -c cachesync",
        ),
    ] {
        let text = std::fs::read_to_string(prefix.join(file)).expect(file);
        assert!(text.contains(says), "{file} lacks {says:?}");
        assert!(text.contains("prefetch"), "{file} names no command");
    }

    // A man page for the whole and for each command, in roff.
    let man = prefix.join("share/man/man1");
    for page in [
        "cachesync.1",
        "cachesync-sync.1",
        "cachesync-resolve.1",
        "cachesync-mount.1",
    ] {
        let text = std::fs::read_to_string(man.join(page)).expect(page);
        assert!(text.contains(".TH"), "{page} is not a man page");
    }
    let sync_page = std::fs::read_to_string(man.join("cachesync-sync.1")).expect("read");
    assert!(sync_page.contains("dry"), "the sync page lacks its options");

    // The units run the installed binary.
    let units = prefix.join("share/systemd/user");
    for unit in [
        "cachesync-prefetch@.service",
        "cachesync-prefetch@.timer",
        "cachesync-mount@.service",
        "cachesync-ui.service",
    ] {
        let text = std::fs::read_to_string(units.join(unit)).expect(unit);
        assert!(!text.contains("@BINDIR@"), "{unit} still has @BINDIR@");
        if unit.ends_with(".service") {
            let exec = format!("ExecStart={}/bin/cachesync ", prefix.display());
            assert!(text.contains(&exec), "{unit}: {text}");
        }
    }

    let out = make("uninstall", &prefix);
    assert!(
        out.status.success(),
        "make uninstall: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(files_under(&prefix), Vec::<PathBuf>::new(), "left behind");
}
