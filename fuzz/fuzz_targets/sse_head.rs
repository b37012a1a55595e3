#![no_main]
//! A request head in arbitrary bytes, read as a connection that opens with `GET /v1/sse` is read:
//! without hyper, by the server's own use of httparse.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    understudy::fuzzing::sse_head(data);
});
