//! The CEL expression parser never panics, reports spans inside the input, and round-trips
//! through the printer (see `wicket_grammar::fuzz::check_parse_expr`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wicket_grammar::fuzz::check_parse_expr(data);
});
