//! Pipeline: the main loop — read a frame, decode it (or count the skip), feed the flow table, hand
//! finished connections to the consumer. Shared by `analyze` and `capture`.

use crate::decode::{decode, Skip, Ts};
use crate::flow::{Conn, FlowTable};
use crate::source::{Next, PacketSource, SourceError};

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
    /// Bytes of input read so far and in total (files), updated at each tick.
    pub input: (u64, u64),
    /// Connections finished early because the flow table was full (`--max-flows`).
    pub evicted: u64,
    /// Most connections tracked at once.
    pub peak_flows: usize,
}

impl DecodeStats {
    pub fn skipped_total(&self) -> u64 {
        self.skipped.iter().sum()
    }
}

/// Why the loop returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// The source is exhausted.
    End,
    /// The consumer asked to stop (signal, packet count, duration).
    Asked,
}

/// Where finished connections go, and the hooks a live run needs.
pub trait Consumer {
    /// A connection the flow table has finished.
    fn conn(&mut self, c: Conn);
    /// Checked before every frame; cheap. `false` stops the loop.
    fn keep_going(&mut self, _stats: &DecodeStats) -> bool {
        true
    }
    /// Called when the source is idle, every few hundred frames, and whenever [`Self::tick_due`]
    /// says so: refresh, sample, sweep.
    fn tick(&mut self, _table: &mut FlowTable, _stats: &DecodeStats) -> bool {
        true
    }
    /// Checked after every frame: a live run ticks on time even when the source is never idle.
    fn tick_due(&mut self) -> bool {
        false
    }
}

/// Any closure taking connections is a consumer (for tests and simple runs).
impl<F: FnMut(Conn)> Consumer for F {
    fn conn(&mut self, c: Conn) {
        self(c)
    }
}

/// The latest timestamp a classic pcap can carry (32-bit seconds), in nanoseconds.
pub const MAX_TS: Ts = 4_294_967_295 * 1_000_000_000;

/// Frames between ticks on a busy source (ticks rate-limit themselves by the wall clock).
const TICK_EVERY: u64 = 256;

/// Runs the loop until the source ends or the consumer says stop. Errors from the source are
/// collected (a damaged file ends that file, not the run) and the loop goes on with what is left.
pub fn run(
    source: &mut dyn PacketSource,
    table: &mut FlowTable,
    stats: &mut DecodeStats,
    errors: &mut Vec<SourceError>,
    consumer: &mut impl Consumer,
) -> Stop {
    let stop = run_inner(source, table, stats, errors, consumer);
    stats.evicted = table.stats.evicted_full;
    stats.peak_flows = table.stats.peak;
    stop
}

fn run_inner(
    source: &mut dyn PacketSource,
    table: &mut FlowTable,
    stats: &mut DecodeStats,
    errors: &mut Vec<SourceError>,
    consumer: &mut impl Consumer,
) -> Stop {
    loop {
        if !consumer.keep_going(stats) {
            return Stop::Asked;
        }
        let frame = match source.next_frame() {
            Ok(Next::Frame(f)) => f,
            Ok(Next::Idle) => {
                stats.input = source.progress();
                if !consumer.tick(table, stats) {
                    return Stop::Asked;
                }
                continue;
            }
            Ok(Next::End) => return Stop::End,
            Err(e) => {
                let fatal = matches!(e, SourceError::Live { .. });
                errors.push(e);
                if fatal {
                    return Stop::End;
                }
                continue;
            }
        };
        // Timestamps outside 1970–2106 are damage, not time: clamp them so that differences
        // and projections stay in range.
        let mut frame = frame;
        frame.ts = frame.ts.clamp(0, MAX_TS);
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
                table.push(&seg, &mut |c| consumer.conn(c));
            }
            Err(skip) => stats.skipped[skip as usize] += 1,
        }
        if stats.frames % TICK_EVERY == 0 || consumer.tick_due() {
            stats.input = source.progress();
            stats.evicted = table.stats.evicted_full;
            stats.peak_flows = table.stats.peak;
            if !consumer.tick(table, stats) {
                return Stop::Asked;
            }
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
    run(src.as_mut(), &mut table, &mut stats, &mut errors, &mut sink);
    table.finish(&mut sink);
    Ok((conns, stats, errors))
}
