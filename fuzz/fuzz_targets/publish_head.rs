#![no_main]
//! Requests in arbitrary bytes, taken off a connection's buffer as a publisher's connection's
//! are: without hyper, by the server's own use of httparse.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    understudy::fuzzing::publish_head(data);
});
