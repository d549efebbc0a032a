//! Where hcleak's time goes, stage by stage, without a profiler: reads the same capture four
//! times, each pass doing one stage more than the last, and prints nanoseconds per packet.
//!
//! ```sh
//! cargo run --release --example stages -- FILE
//! ```
//!
//! 1. `read`: hcleak's source (libpcap) only;
//! 2. `+decode`: and the decoder (the hand-written fast path; etherparse for unusual frames);
//! 3. `+flows`: and the flow table (lookup, per-packet update, expiry sweeps), connections dropped;
//! 4. `+classify`: and the backend aggregates every finished connection goes into (what
//!    `hcleak analyze` does before its verdict).
//!
//! Each increment is that stage's cost. The verdict and rendering at the end of `hcleak analyze`
//! are not in here; compare with `hcleak analyze FILE --format json` timed on its own.

use hcleak::backend::Backends;
use hcleak::decode::decode;
use hcleak::flow::{Conn, FlowConfig, FlowTable};
use hcleak::source::{open_files, Next};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Stage {
    Read,
    Decode,
    Flows,
    Classify,
}

/// One pass over the file up to `stage`; returns (frames, a checksum that keeps work alive).
fn pass(path: &PathBuf, stage: Stage) -> Result<(u64, u64), String> {
    let mut src = open_files(std::slice::from_ref(path), None).map_err(|e| e.to_string())?;
    let mut table = FlowTable::new(FlowConfig::default());
    let mut backends = Backends::new();
    let (mut frames, mut check, mut conns) = (0u64, 0u64, 0u64);
    let mut sink = |c: Conn| {
        conns += 1;
        if stage >= Stage::Classify {
            backends.add(&c);
        }
    };
    loop {
        let f = match src.next_frame() {
            Ok(Next::Frame(f)) => f,
            Ok(Next::Idle) => continue,
            Ok(Next::End) => break,
            Err(e) => return Err(e.to_string()),
        };
        frames += 1;
        check = check.wrapping_add(f.data.len() as u64);
        if stage == Stage::Read {
            continue;
        }
        let Ok(seg) = decode(f.link, f.ts, f.data) else { continue };
        check = check.wrapping_add(u64::from(seg.sport) ^ u64::from(seg.seq));
        if stage >= Stage::Flows {
            table.push(&seg, &mut sink);
        }
    }
    table.finish(&mut sink);
    Ok((frames, check.wrapping_add(conns)))
}

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: stages FILE");
        return ExitCode::from(2);
    };
    println!("size_of::<Conn>() = {} bytes", std::mem::size_of::<Conn>());
    let stages =
        [(Stage::Read, "read"), (Stage::Decode, "+decode"), (Stage::Flows, "+flows"), (Stage::Classify, "+classify")];
    let mut prev = 0.0;
    for (stage, name) in stages {
        let t = Instant::now();
        let (frames, check) = match pass(&path, stage) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("stages: {e}");
                return ExitCode::from(1);
            }
        };
        let ns = t.elapsed().as_secs_f64() * 1e9 / frames.max(1) as f64;
        println!(
            "{name:<10} {ns:7.1} ns/packet  (+{:5.1})  {:6.2} M packets/s  [{frames} packets, check {check:x}]",
            ns - prev,
            1e3 / ns
        );
        prev = ns;
    }
    ExitCode::SUCCESS
}
