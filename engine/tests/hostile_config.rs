//! Hostile input for what cachesync reads from files a user (or a damaged disk) can change:
//! the workspace config and the ignore file (part of the fault suite). Loading arbitrary or
//! damaged text never panics: it gives a config error, or a value that works.

use cachesync_engine::config::Config;
use cachesync_engine::ignore_rules::IgnoreRules;
use proptest::prelude::*;

fn valid_config() -> String {
    serde_json::to_string_pretty(&Config::new("/mnt/share/project".into())).expect("serializes")
}

/// 256 cases, or 5000 with `CACHESYNC_FAULTS=all` (`make faults`).
fn cases() -> u32 {
    if std::env::var("CACHESYNC_FAULTS").as_deref() == Ok("all") {
        5000
    } else {
        256
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn a_damaged_or_forged_config_is_refused_or_works(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in 0usize..40,
        noise in proptest::collection::vec(any::<u8>(), 0..300),
        use_noise in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        let bytes = if use_noise {
            noise
        } else {
            let mut b = valid_config().into_bytes();
            for (at, x) in &flips {
                let i = at % b.len();
                b[i] ^= (*x).max(1);
            }
            b.truncate(b.len() - cut.min(b.len()));
            b
        };
        std::fs::write(&path, &bytes).expect("write");
        if let Ok(c) = Config::load(&path) {
            // What loads is usable: its timeout and working set answer.
            let _ = c.timeout();
            prop_assert!(cachesync_engine::workset::WorkingSet::new(&c).is_ok());
        }
    }

    #[test]
    fn any_ignore_file_is_refused_or_works(
        lines in proptest::collection::vec("[ -~]{0,30}", 0..12),
        raw in proptest::collection::vec(any::<u8>(), 0..200),
        path in proptest::collection::vec(1u8..=255, 1..40),
    ) {
        for text in [lines.join("\n").into_bytes(), raw] {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::write(dir.path().join(".cachesyncignore"), &text).expect("write");
            if let Ok(rules) = IgnoreRules::load(dir.path()) {
                let _ = rules.is_ignored(&path, false);
                let _ = rules.is_ignored(&path, true);
            }
        }
    }
}
