//! The byte format the `decode_flow` fuzz target reads, and the stages both targets drive after the
//! frames are read (the real pipeline on an in-memory source, then every renderer). Shared by the
//! targets and by `examples/make_seeds.rs`, which turns real captures into seeds in this format.
//!
//! Format (all integers big-endian):
//!
//! ```text
//! byte 0: control
//!   bits 0-2  link layer: LINKS[(b & 7) % 5]  (Ethernet, SLL, SLL2, raw IP, BSD NULL)
//!   bit  3    deltas are signed (i16): time may go backwards, as in a merged or damaged capture
//!   bits 4-5  FlowTable max_flows: MAX_FLOWS[..]  (64, 1, 2, 8 — small, so eviction happens)
//!   bits 6-7  time unit of a delta: UNITS[..]     (1 ms, 100 ms, 10 s, 2^48 ns ≈ 3.3 days)
//! then frames until the input ends:
//!   u16 dt    time since the previous frame, in units (the first frame is at 1.7e9 s + dt)
//!   u16 len   frame length (cut to what is left of the input)
//!   len bytes the frame, from the link header on
//! ```
//!
//! Timestamps are computed with saturating arithmetic, so the largest units reach both ends of
//! `i64` nanoseconds (which a pcapng with a large `if_tsoffset` can also produce).

use hcleak::backend::Backends;
use hcleak::classify;
use hcleak::decode::{DecodeStats, Link, Ts};
use hcleak::flow::{Conn, FlowConfig, FlowTable};
use hcleak::pipeline::{self, Consumer};
use hcleak::source::MemorySource;
use hcleak::render;
use hcleak::verdict::{self, Options};

pub const LINKS: [Link; 5] = [Link::Ethernet, Link::Sll, Link::Sll2, Link::Raw, Link::Null];
pub const MAX_FLOWS: [usize; 4] = [64, 1, 2, 8];
pub const UNITS: [Ts; 4] = [1_000_000, 100_000_000, 10_000_000_000, 1 << 48];
pub const BASE_TS: Ts = 1_700_000_000_000_000_000;

/// The control byte's fields.
#[derive(Clone, Copy, Debug)]
pub struct Control {
    pub link: Link,
    pub signed: bool,
    pub max_flows: usize,
    pub unit: Ts,
}

impl Control {
    pub fn parse(b: u8) -> Control {
        Control {
            link: LINKS[usize::from(b & 7) % LINKS.len()],
            signed: b & 8 != 0,
            max_flows: MAX_FLOWS[usize::from((b >> 4) & 3)],
            unit: UNITS[usize::from(b >> 6)],
        }
    }

    /// The control byte for a link with the defaults (unsigned deltas, 64 flows, 1 ms units).
    pub fn byte_for(link: Link) -> u8 {
        LINKS.iter().position(|l| *l == link).expect("every link is listed") as u8
    }
}

/// Frames with their timestamps, borrowed from the input.
pub type Frames<'a> = Vec<(Ts, &'a [u8])>;

/// Splits an input into its control and frames with their timestamps.
pub fn frames(data: &[u8]) -> Option<(Control, Frames<'_>)> {
    let (&c, mut rest) = data.split_first()?;
    let ctl = Control::parse(c);
    let mut out = Vec::new();
    let mut ts = BASE_TS;
    while rest.len() >= 4 {
        let raw = u16::from_be_bytes([rest[0], rest[1]]);
        let dt = if ctl.signed { i64::from(raw as i16) } else { i64::from(raw) };
        ts = ts.saturating_add(dt.saturating_mul(ctl.unit));
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]])).min(rest.len() - 4);
        out.push((ts, &rest[4..4 + len]));
        rest = &rest[4 + len..];
    }
    Some((ctl, out))
}

/// Appends one frame in the format above (the delta in 1 ms units, saturated to u16).
pub fn encode_frame(out: &mut Vec<u8>, dt_ns: Ts, frame: &[u8]) {
    let dt = (dt_ns.max(0) / UNITS[0]).min(i64::from(u16::MAX)) as u16;
    let len = frame.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&dt.to_be_bytes());
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&frame[..len]);
}

/// What the binary does with finished connections and counters: every `--flows` rendering, then
/// the aggregates, the verdict and both report formats. Checks the JSON report parses and counts
/// the frames it was given.
pub fn judge_and_render(conns: &[Conn], stats: &DecodeStats) {
    let mut out = Vec::with_capacity(4096);
    let mut summary = render::FlowSummary::default();
    let mut backends = Backends::new();
    render::flow_tsv_header(&mut out).expect("write to Vec");
    for c in conns {
        let label = classify::flow_label(c);
        render::flow_tsv(&mut out, c, label).expect("write to Vec");
        render::flow_json(&mut out, c, label).expect("write to Vec");
        summary.add(c);
        backends.add(c);
        if out.len() > 1 << 16 {
            out.clear();
        }
    }
    render::flow_summary(&mut out, &summary, stats, 1).expect("write to Vec");
    let report = verdict::judge(&backends, None, &Options { limit: None, min_conns: 1 });
    let report_limit = verdict::judge(&backends, None, &Options { limit: Some(1024), min_conns: 3 });
    out.clear();
    render::report_table(&mut out, &report, stats).expect("write to Vec");
    render::report_table(&mut out, &report_limit, stats).expect("write to Vec");
    render::report_nagios(&mut out, &report).expect("write to Vec");
    render::report_lines(&mut out, &report, 0).expect("write to Vec");
    // Issue 16: text from the wire is never printed raw (terminal escapes, BEL, NUL, …).
    let text = String::from_utf8_lossy(&out);
    let raw = text.chars().find(|c| c.is_control() && *c != '\n' && *c != '\t');
    assert!(raw.is_none(), "raw control character {raw:?} in the rendered report");
    out.clear();
    render::report_json(&mut out, &report, stats).expect("write to Vec");
    let doc: serde_json::Value = serde_json::from_slice(&out).expect("report_json writes valid JSON");
    assert_eq!(doc["capture"]["packets"].as_u64(), Some(stats.frames), "capture.packets counts every frame");
}

/// The frames through the real pipeline (`pipeline::run` on an in-memory source: the timestamp
/// clamp, the decoder with its tunnels, the `-i any` de-duplication, the flow table), checking
/// after every frame that the table holds at most `max_flows`, and that `finish` hands out every
/// connection still open.
pub fn run_frames(ctl: Control, frames: &[(Ts, &[u8])]) -> (Vec<Conn>, DecodeStats) {
    struct Sink {
        conns: Vec<Conn>,
        max_flows: usize,
    }
    impl Consumer for Sink {
        fn conn(&mut self, c: Conn) {
            self.conns.push(c);
        }
        fn tick_due(&mut self) -> bool {
            true
        }
        fn tick(&mut self, table: &mut FlowTable, _: &DecodeStats) -> bool {
            assert!(table.len() <= self.max_flows, "the table holds at most max_flows connections");
            true
        }
    }
    let mut src = MemorySource::frames(ctl.link, frames.iter().map(|&(ts, f)| (ts, f.to_vec())));
    let mut table = FlowTable::new(FlowConfig { max_flows: ctl.max_flows, ..FlowConfig::default() });
    let mut stats = DecodeStats::default();
    let mut errors = Vec::new();
    let mut sink = Sink { conns: Vec::new(), max_flows: ctl.max_flows };
    pipeline::run(&mut src, &mut table, &mut stats, &mut errors, &mut sink);
    assert!(errors.is_empty(), "memory has no read errors");
    assert_eq!(stats.frames, frames.len() as u64, "every frame is counted");
    assert_eq!(stats.tcp + stats.duplicates + stats.skipped_total(), stats.frames, "every frame is TCP, a copy or a skip");
    let live = table.live().count();
    let before = sink.conns.len();
    table.finish(&mut |c| sink.conns.push(c));
    assert_eq!(sink.conns.len() - before, live, "finish hands out every live connection");
    assert!(table.is_empty());
    (sink.conns, stats)
}

/// The `decode_flow` target: frames in this format through the pipeline, the verdict and every
/// renderer.
pub fn decode_flow(data: &[u8]) {
    let Some((ctl, frames)) = frames(data) else { return };
    let (conns, stats) = run_frames(ctl, &frames);
    judge_and_render(&conns, &stats);
}

/// The `capture_file` target: `data` written to `path` as a capture file, read back through
/// `pipeline::read_flows` (libpcap, the file source, the pipeline), then the verdict and every
/// renderer. Every error message is one line.
pub fn capture_file(data: &[u8], path: &std::path::Path) {
    std::fs::write(path, data).expect("write the capture");
    match pipeline::read_flows(&[path.to_path_buf()], None, FlowConfig::default()) {
        Ok((conns, stats, errors)) => {
            for e in &errors {
                // Every error is one line naming the file.
                let s = e.to_string();
                assert!(!s.contains('\n'), "error message spans lines: {s:?}");
            }
            judge_and_render(&conns, &stats);
        }
        Err(e) => {
            let s = e.to_string();
            assert!(!s.contains('\n'), "error message spans lines: {s:?}");
        }
    }
}
