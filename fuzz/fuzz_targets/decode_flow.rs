//! Frames in the format of `hcleak_fuzz` (control byte, then dt/len-prefixed frames) through the
//! real pipeline (`pipeline::run` on an in-memory source, a small `FlowTable`), the classifier, the
//! aggregates, the verdict and every renderer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hcleak_fuzz::decode_flow(data));
