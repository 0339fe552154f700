//! The tunnel's length-prefixed JSON frame decoder never panics and reads whole frames whole
//! (see `wicket_runtime::fuzz::check_frame_decoder`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wicket_runtime::fuzz::check_frame_decoder(data);
});
