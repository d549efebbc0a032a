//! Every committed seed through its target's code (the real pipeline, the verdict, every renderer)
//! without libFuzzer: `cd fuzz && cargo test` checks that the targets build and that no seed
//! fails, on the stable toolchain and without cargo-fuzz.

use std::path::{Path, PathBuf};

fn seeds(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    assert!(v.len() >= 10, "{} seeds in {}: the seed corpus is missing", v.len(), dir.display());
    v
}

#[test]
fn every_decode_flow_seed_runs_through_the_pipeline() {
    for s in seeds("decode_flow") {
        let data = std::fs::read(&s).unwrap();
        let (ctl, frames) = hcleak_fuzz::frames(&data).expect("a seed has a control byte");
        let (conns, stats) = hcleak_fuzz::run_frames(ctl, &frames);
        assert_eq!(stats.frames, frames.len() as u64);
        assert!(stats.tcp > 0 && !conns.is_empty(), "{}: a seed made from a fixture has TCP", s.display());
        hcleak_fuzz::judge_and_render(&conns, &stats);
    }
}

#[test]
fn every_capture_file_seed_runs_through_the_pipeline() {
    let path = std::env::temp_dir().join(format!("hcleak-fuzz-seeds-{}.cap", std::process::id()));
    for s in seeds("capture_file") {
        hcleak_fuzz::capture_file(&std::fs::read(&s).unwrap(), &path);
    }
    let _ = std::fs::remove_file(&path);
}
