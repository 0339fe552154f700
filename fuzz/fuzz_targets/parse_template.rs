//! The `${…}` template parser never panics and reports consistent spans (see
//! `wicket_grammar::fuzz::check_parse_template`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wicket_grammar::fuzz::check_parse_template(data);
});
