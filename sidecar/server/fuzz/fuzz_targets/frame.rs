//! Frame decoding and message parsing never panic, whatever the bytes.
#![no_main]

use argon_sidecar::wire::{Frame, Request};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = Frame::decode(&mut buf) {
        let _ = Request::parse(&frame);
    }
});
