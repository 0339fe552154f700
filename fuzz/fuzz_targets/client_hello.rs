//! The ClientHello readers (SNI routing, JA4) never panic and give well-formed results (see
//! `wicket_runtime::fuzz::check_client_hello`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wicket_runtime::fuzz::check_client_hello(data);
});
