//! The input as a capture file (pcap or pcapng, read by libpcap) through
//! `pipeline::read_flows`, then the verdict and every renderer.
#![no_main]

use hcleak::flow::FlowConfig;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

/// One file per process in /dev/shm (memory-backed), rewritten for every input.
fn path() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm".into() } else { std::env::temp_dir() };
        dir.join(format!("hcleak-fuzz-{}.cap", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let p = path();
    std::fs::write(p, data).expect("write the capture");
    match hcleak::pipeline::read_flows(std::slice::from_ref(p), None, FlowConfig::default()) {
        Ok((conns, stats, errors)) => {
            for e in &errors {
                // Every error is one line naming the file.
                let s = e.to_string();
                assert!(!s.contains('\n'), "error message spans lines: {s:?}");
            }
            hcleak_fuzz::judge_and_render(&conns, &stats);
        }
        Err(e) => {
            let s = e.to_string();
            assert!(!s.contains('\n'), "error message spans lines: {s:?}");
        }
    }
});
