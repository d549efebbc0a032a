//! Writes seed corpora for both fuzz targets from real captures.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example make_seeds -- OUT_DIR CAPTURE...`
//! writes `OUT_DIR/decode_flow/NAME` (the capture's first frames in the decode_flow format) and
//! `OUT_DIR/capture_file/NAME` (the first records of the capture file itself, cut at a record
//! boundary for pcap, whole for pcapng) for each capture.

use hcleak::source::{FileSource, Next, PacketSource};
use std::path::{Path, PathBuf};

/// Frames per seed: enough for a few probes, small enough for fast executions.
const MAX_FRAMES: usize = 120;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (out, inputs) = args.split_first().expect("usage: make_seeds OUT_DIR CAPTURE...");
    let out = PathBuf::from(out);
    for sub in ["decode_flow", "capture_file"] {
        std::fs::create_dir_all(out.join(sub)).expect("create output dir");
    }
    for input in inputs {
        let path = Path::new(input);
        let stem = path.file_name().unwrap().to_string_lossy().replace('.', "_");
        let mut src = match FileSource::open(path, None) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("skip {input}: {e}");
                continue;
            }
        };
        let mut seed = Vec::new();
        let mut prev = None;
        let mut n = 0;
        while n < MAX_FRAMES {
            match src.next_frame() {
                Ok(Next::Frame(f)) => {
                    if seed.is_empty() {
                        seed.push(hcleak_fuzz::Control::byte_for(f.link));
                    }
                    hcleak_fuzz::encode_frame(&mut seed, prev.map_or(0, |p| f.ts - p), f.data);
                    prev = Some(f.ts);
                    n += 1;
                }
                _ => break,
            }
        }
        if !seed.is_empty() {
            std::fs::write(out.join("decode_flow").join(&stem), &seed).expect("write seed");
        }
        let bytes = std::fs::read(path).expect("read capture");
        std::fs::write(out.join("capture_file").join(&stem), pcap_prefix(&bytes, MAX_FRAMES)).expect("write seed");
        println!("{input}: {n} frames");
    }
}

/// The global header and the first `n` records of a classic pcap; other files whole.
fn pcap_prefix(b: &[u8], n: usize) -> &[u8] {
    let le = match b.get(..4) {
        Some([0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1]) => true,
        Some([0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d]) => false,
        _ => return b,
    };
    let mut off = 24;
    for _ in 0..n {
        let Some(h) = b.get(off + 8..off + 12) else { break };
        let caplen =
            if le { u32::from_le_bytes(h.try_into().unwrap()) } else { u32::from_be_bytes(h.try_into().unwrap()) };
        let next = off + 16 + caplen as usize;
        if next > b.len() {
            break;
        }
        off = next;
    }
    &b[..off.min(b.len())]
}
