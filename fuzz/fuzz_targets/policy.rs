//! Loading a policy file end to end (lint, compile) never panics, diagnostics point inside the
//! file, and the compiled program agrees with the reference interpreter (see
//! `wicket_engine::fuzz::check_policy`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wicket_engine::fuzz::check_policy(data);
});
