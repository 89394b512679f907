//! Fuzzes the configuration file: `Config::from_sources` on arbitrary UTF-8
//! TOML text, with an empty environment, must return a config or an error,
//! and never panic.
#![no_main]

use std::collections::BTreeMap;

use gatehouse::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::from_sources(Some(text), BTreeMap::new()) {
        // The message must be printable without panicking. (The key may be
        // empty: `"" = 1` is valid TOML naming an unknown, empty key.)
        let _ = e.to_string();
    }
});
