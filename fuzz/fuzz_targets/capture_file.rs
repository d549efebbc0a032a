//! The input as a capture file (pcap or pcapng, read by libpcap) through
//! `pipeline::read_flows`, then the verdict and every renderer.
#![no_main]

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

fuzz_target!(|data: &[u8]| hcleak_fuzz::capture_file(data, path()));
