//! The config parser: any text gives a config or located problems, never a panic, and every
//! problem points at a line of the text.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = strata_config::parse(text, "fuzz.toml", std::path::Path::new("/nonexistent")) {
        let lines = text.lines().count().max(1) + 1;
        for p in e.problems() {
            assert!(p.line >= 1 && p.line <= lines, "problem at line {} of {lines}: {p}", p.line);
        }
    }
});
