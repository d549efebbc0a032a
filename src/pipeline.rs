//! Pipeline: the main loop — read a frame, decode it (or count the skip), feed the flow table, hand
//! finished connections to the consumer. Shared by `analyze` and `capture`.

use crate::decode::{decode, Skip, Ts};
use crate::flow::{Conn, FlowTable};
use crate::source::{PacketSource, SourceError};

/// What the decoder saw, for the summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct DecodeStats {
    pub frames: u64,
    pub wire_bytes: u64,
    pub tcp: u64,
    pub skipped: [u64; Skip::ALL.len()],
    /// TCP segments whose captured bytes were cut by the snaplen (still analysed).
    pub cut: u64,
    pub first_ts: Option<Ts>,
    pub last_ts: Option<Ts>,
}

impl DecodeStats {
    pub fn skipped_total(&self) -> u64 {
        self.skipped.iter().sum()
    }
}

/// Why the loop returned.
#[derive(Debug)]
pub enum Stop {
    /// The source is exhausted.
    End,
    /// The caller asked to stop (signal, packet count, duration).
    Asked,
}

/// Runs the loop until the source ends or `keep_going` says stop. Errors from the source are
/// collected (a damaged file ends that file, not the run) and the loop goes on with what is left.
pub fn run(
    source: &mut dyn PacketSource,
    table: &mut FlowTable,
    stats: &mut DecodeStats,
    errors: &mut Vec<SourceError>,
    sink: &mut impl FnMut(Conn),
    mut keep_going: impl FnMut(&DecodeStats) -> bool,
) -> Stop {
    loop {
        if !keep_going(stats) {
            return Stop::Asked;
        }
        let frame = match source.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => return Stop::End,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        stats.frames += 1;
        stats.wire_bytes += u64::from(frame.wire_len);
        stats.first_ts.get_or_insert(frame.ts);
        stats.last_ts = Some(stats.last_ts.map_or(frame.ts, |t| t.max(frame.ts)));
        match decode(frame.link, frame.ts, frame.data) {
            Ok(seg) => {
                stats.tcp += 1;
                if frame.wire_len as usize > frame.data.len() {
                    stats.cut += 1;
                }
                table.push(&seg, sink);
            }
            Err(skip) => stats.skipped[skip as usize] += 1,
        }
    }
}

/// Reads whole capture files and returns every connection (in finish order), the decode counters
/// and any read errors. Convenient for tests and small files; large runs stream through [`run`].
pub fn read_flows(
    paths: &[std::path::PathBuf],
    filter: Option<&str>,
    cfg: crate::flow::FlowConfig,
) -> Result<(Vec<Conn>, DecodeStats, Vec<SourceError>), SourceError> {
    let mut src = crate::source::open_files(paths, filter)?;
    let mut table = FlowTable::new(cfg);
    let mut stats = DecodeStats::default();
    let mut errors = Vec::new();
    let mut conns = Vec::new();
    let mut sink = |c: Conn| conns.push(c);
    run(src.as_mut(), &mut table, &mut stats, &mut errors, &mut sink, |_| true);
    table.finish(&mut sink);
    Ok((conns, stats, errors))
}
