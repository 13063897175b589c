//! Any text as a hosts file: entries or an error naming a line, never a
//! panic; and every entry it accepts finds itself by its own text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall::hosts;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match hosts::parse(text, 7610) {
        Ok(entries) => {
            assert!(!entries.is_empty());
            for (i, e) in entries.iter().enumerate() {
                assert_eq!(hosts::find_self(&entries, &e.text), Ok(i));
            }
            let _ = hosts::fingerprint(&entries);
        }
        Err(e) => assert!(e.line.is_none_or(|l| l >= 1)),
    }
});
