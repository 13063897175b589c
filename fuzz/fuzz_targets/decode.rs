//! Any bytes, decoded with and without a key: a message or an error, never
//! a panic; and what decodes encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall::wire::{self, Key};

fuzz_target!(|data: &[u8]| {
    let key = Key::from_secret(b"fuzz");
    for key in [None, Some(&key)] {
        if let Ok(msg) = wire::decode(data, key) {
            let again = wire::encode(&msg, key);
            assert_eq!(wire::decode(again.as_bytes(), key), Ok(msg));
        }
    }
});
