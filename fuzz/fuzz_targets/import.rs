//! `strata import`: any text, given to any of the four importers, is translated or refused
//! with located problems, never a panic; a translation passes `strata check` as it is unless a
//! note says a line was kept as written (a file it names is not on this machine); a table the
//! importer could not make valid is commented out with a note, and no note may say the check
//! refused what the importer wrote; every note points at a line of the text.
#![no_main]

use strata::import::{check, KEPT, TRANSLATORS};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let (name, translate) = TRANSLATORS[usize::from(which) % TRANSLATORS.len()];
    // a directory that does not exist: a relative path in the text (PgBouncer's auth_file,
    // HAProxy's crt) reads nothing
    let file = format!("/nonexistent/fuzz.{name}");
    let lines = text.lines().count().max(1) + 1;
    let notes = match translate(text, &file) {
        Ok(t) => {
            // a line kept as written (a file it names is not on this machine) is the one thing
            // `strata check` may refuse, and its note says so
            if !t.notes.iter().any(|n| n.message.contains(KEPT)) {
                assert_eq!(check(&t.toml), Ok(()), "{name}: the translation fails strata check:\n{}", t.toml);
            }
            assert!(
                !t.notes.iter().any(|n| n.message.contains("bug")),
                "{name}: {:?}",
                t.notes
            );
            t.notes
        }
        Err(problems) => {
            assert!(!problems.is_empty(), "{name}: refused without a problem");
            problems
        }
    };
    for n in &notes {
        assert!(n.at.line <= lines, "{name}: a note at line {} of {lines}: {n}", n.at.line);
    }
});
