//! Frames in the format of `hcleak_fuzz` (control byte, then dt/len-prefixed frames) through
//! `decode::decode`, a small `FlowTable`, the classifier, the aggregates, the verdict and every
//! renderer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((ctl, frames)) = hcleak_fuzz::frames(data) else { return };
    let (conns, stats) = hcleak_fuzz::run_frames(ctl, &frames);
    hcleak_fuzz::judge_and_render(&conns, &stats);
});
