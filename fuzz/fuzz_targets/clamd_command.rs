//! clamd command framing and parsing: any bytes give a command, "read more",
//! "too long" or UNKNOWN COMMAND, never a panic; what is used is within the
//! input, and a command never exceeds the length limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_clamd_server::proto::{MAX_COMMAND, Split, parse, split};

fuzz_target!(|data: &[u8]| {
    for eof in [false, true] {
        let mut rest = data;
        // Walk the input command by command, as a session reads it.
        while let Split::Command {
            framing,
            text,
            used,
        } = split(rest, eof)
        {
            assert!(used > 0 && used <= rest.len());
            assert!(text.len() <= MAX_COMMAND);
            if let Ok(c) = parse(framing, text) {
                assert!(!c.name().is_empty());
            }
            rest = &rest[used..];
        }
    }
});
