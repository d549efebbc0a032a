//! Pipeline: the main loop — read a frame, decode it (or count the skip), feed the flow table, hand
//! finished connections to the consumer. Shared by `analyze` and `capture`.

pub use crate::decode::DecodeStats;
use crate::decode::{decode_encap_then, Addr, Encap, Link, Segment, Ts};
use crate::flow::{flow_hash, Conn, FlowTable};
use crate::source::{After, Frame, Next, PacketSource, SourceError};

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

/// Recent segments of a Linux cooked (`-i any`) capture, to count each packet once: a packet that
/// crosses a veth and a bridge (or a bridge and the NIC) is captured on each. A small ring of
/// fingerprints — the segment's addresses, ports, sequence numbers, flags, window and length, not
/// the TTL or checksums a router rewrites — with the time and the interface each was seen on. A
/// copy is a match within [`Dedup::WINDOW`] seen on another interface (SLL2 names it); with SLL v1
/// (no interface index) any match within the shorter [`Dedup::WINDOW_SLL1`], since a duplicate
/// ACK repeats every field. A retransmission carries the same fields but leaves on the same
/// interface, and not within the window. No allocation: a fixed array.
#[derive(Clone, Debug)]
pub struct Dedup {
    ring: [(u64, Ts, u32); Dedup::SLOTS],
    next: usize,
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup { ring: [(0, Ts::MIN, 0); Dedup::SLOTS], next: 0 }
    }
}

impl Dedup {
    /// Segments remembered: a copy follows its original within microseconds, a few segments later.
    const SLOTS: usize = 32;
    /// The longest gap between the two copies of one packet named by interface (measured with
    /// `tcpdump -i any` on a veth and its bridge, 1 607 copies: median 2 µs, p99 12 µs, max 35 µs).
    pub(crate) const WINDOW: Ts = 2_000_000;
    /// The same for Linux cooked v1, which does not name the interface: short, so that duplicate
    /// ACKs a moment apart are not taken for copies.
    pub(crate) const WINDOW_SLL1: Ts = 200_000;

    /// True when `seg` is a copy of a segment seen just before on another interface.
    #[inline(always)]
    pub fn is_copy(&mut self, link: Link, frame: &[u8], seg: &Segment<'_>) -> bool {
        let ifindex = match link {
            Link::Sll2 => match frame.get(4..8) {
                Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                None => return false,
            },
            Link::Sll => 0,
            _ => return false,
        };
        let fp = Self::fingerprint(seg);
        let window = if link == Link::Sll { Self::WINDOW_SLL1 } else { Self::WINDOW };
        for &(f, ts, ifi) in &self.ring {
            let other_iface = link == Link::Sll || ifi != ifindex;
            if f == fp && other_iface && seg.ts.checked_sub(ts).is_some_and(|d| (0..=window).contains(&d)) {
                return true;
            }
        }
        self.ring[self.next] = (fp, seg.ts, ifindex);
        self.next = (self.next + 1) % Self::SLOTS;
        false
    }

    #[inline(always)]
    fn fingerprint(s: &Segment<'_>) -> u64 {
        let mix = |h: u64, v: u64| (h ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        let mut h = mix(0, s.src.0 as u64 ^ (s.src.0 >> 64) as u64);
        h = mix(h, s.dst.0 as u64 ^ (s.dst.0 >> 64) as u64);
        h = mix(h, u64::from(s.sport) << 48 | u64::from(s.dport) << 32 | u64::from(s.seq));
        h = mix(h, u64::from(s.ack) << 32 | u64::from(s.payload_len));
        mix(h, u64::from(s.flags) << 16 | u64::from(s.window.unwrap_or(0)))
    }
}

/// The latest timestamp a classic pcap can carry (32-bit seconds), in nanoseconds.
pub(crate) const MAX_TS: Ts = 4_294_967_295 * 1_000_000_000;

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
    let mut dedup = Dedup::default();
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
        ingest(frame, stats, &mut dedup, |seg| table.push(seg, &mut |c| consumer.conn(c)));
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

/// One frame through the decoder: counted, its time clamped, and its TCP segment, if it has one,
/// handed to `then`.
#[inline(always)]
fn ingest<'a>(frame: Frame<'a>, stats: &mut DecodeStats, dedup: &mut Dedup, then: impl FnOnce(&Segment<'a>)) {
    // Timestamps outside 1970–2106 are damage, not time: clamp them so that differences
    // and projections stay in range.
    let ts = frame.ts.clamp(0, MAX_TS);
    stats.frames += 1;
    stats.wire_bytes += u64::from(frame.wire_len);
    stats.first_ts.get_or_insert(ts);
    stats.last_ts = Some(stats.last_ts.map_or(ts, |t| t.max(ts)));
    decode_encap_then(
        frame.link,
        ts,
        frame.data,
        // Inlined, the segment is built where it is used instead of copied into a call (the
        // reading thread: 21 instructions a packet fewer).
        #[inline(always)]
        |seg, encap| {
            if dedup.is_copy(frame.link, frame.data, &seg) {
                stats.duplicates += 1;
                return;
            }
            stats.tcp += 1;
            if encap != Encap::None {
                stats.encapsulated[encap as usize] += 1;
            }
            stats.cut += u64::from(frame.wire_len as usize > frame.data.len());
            then(&seg)
        },
        |skip| stats.skipped[skip as usize] += 1,
    )
}

/// Frames per batch handed from the reading thread to the flow thread: big enough that waking
/// the other thread is rare (128 measured much slower; 1024 to 16 384 within this host's noise).
const BATCH: usize = 4096;
/// A batch is also handed over once its frames' bytes reach this, so that full-size frames do not
/// make batches of many megabytes (fresh memory to fault in, out of cache by the time it is read).
const BATCH_BYTES: usize = 512 * 1024;
/// Room for one more frame past [`BATCH_BYTES`] (libpcap's largest snaplen), so the arena never
/// grows.
const MAX_FRAME: usize = 262_144;
/// Batches in flight between the threads; the reader waits when the flow thread is this far behind.
const IN_FLIGHT: usize = 4;

/// One decoded TCP segment in a batch: the decoder's fields, where its captured payload sits in
/// the batch's arena, and its flow hash.
#[derive(Clone, Copy)]
struct SegAt {
    ts: Ts,
    src: Addr,
    dst: Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: Option<u16>,
    payload_len: u32,
    start: u32,
    end: u32,
    hash: u64,
}

impl SegAt {
    #[inline(always)]
    fn segment<'a>(&self, bytes: &'a [u8]) -> Segment<'a> {
        Segment {
            ts: self.ts,
            src: self.src,
            dst: self.dst,
            sport: self.sport,
            dport: self.dport,
            seq: self.seq,
            ack: self.ack,
            flags: self.flags,
            window: self.window,
            payload_len: self.payload_len,
            payload: &bytes[self.start as usize..self.end as usize],
        }
    }
}

/// Decoded segments with their payloads in one arena, and the decoder's counters after them.
/// Batches are recycled, so steady state allocates nothing.
struct Batch {
    segs: Vec<SegAt>,
    bytes: Vec<u8>,
    /// Frames read into this batch, TCP or not.
    frames: usize,
    /// The reader's decode counters after this batch's frames.
    stats: DecodeStats,
    /// Input read so far, after this batch's frames.
    input: (u64, u64),
    /// A read error that came after this batch's frames.
    error: Option<SourceError>,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            segs: Vec::with_capacity(BATCH),
            bytes: Vec::with_capacity(BATCH_BYTES + MAX_FRAME),
            frames: 0,
            stats: DecodeStats::default(),
            input: (0, 0),
            error: None,
        }
    }

    /// Decodes a frame into the batch (a TCP segment is kept, anything else only counted);
    /// true when the batch is full.
    #[inline(always)]
    fn push(&mut self, frame: Frame<'_>, stats: &mut DecodeStats, dedup: &mut Dedup) -> bool {
        let (segs, bytes) = (&mut self.segs, &mut self.bytes);
        ingest(
            frame,
            stats,
            dedup,
            #[inline(always)]
            |seg| {
                let start = bytes.len() as u32;
                bytes.extend_from_slice(seg.payload);
                segs.push(SegAt {
                    ts: seg.ts,
                    src: seg.src,
                    dst: seg.dst,
                    sport: seg.sport,
                    dport: seg.dport,
                    seq: seg.seq,
                    ack: seg.ack,
                    flags: seg.flags,
                    window: seg.window,
                    payload_len: seg.payload_len,
                    start,
                    end: bytes.len() as u32,
                    hash: flow_hash(seg),
                });
            },
        );
        self.frames += 1;
        self.frames == BATCH || self.bytes.len() >= BATCH_BYTES
    }
}

/// [`run`] on two threads: a second thread reads (libpcap) and decodes, copying each TCP segment's
/// fields, payload and flow hash into a batch; this one runs the flow table and the consumer.
/// That splits the work about evenly (half the CPU samples each, on the bench capture; with only
/// libpcap on the reader, the flow thread had 58%). Results are the same as [`run`]'s, frame for
/// frame; only the consumer's ticks, and the counters it sees, come once per batch.
pub fn run_threaded(
    source: &mut (dyn PacketSource + Send),
    table: &mut FlowTable,
    stats: &mut DecodeStats,
    errors: &mut Vec<SourceError>,
    consumer: &mut impl Consumer,
) -> Stop {
    use std::sync::mpsc;
    let (full_tx, full_rx) = mpsc::sync_channel::<Batch>(IN_FLIGHT);
    let (empty_tx, empty_rx) = mpsc::channel::<Batch>();
    let reading = &mut *source;
    let stop = std::thread::scope(|scope| {
        // The reading thread. It stops when the source ends or this thread hangs up.
        let reader = std::thread::Builder::new().name("hcleak-read".into()).spawn_scoped(scope, move || {
            let mut batch = Batch::new();
            let mut decoded = DecodeStats::default();
            let mut dedup = Dedup::default();
            let send = |batch: &mut Batch, input: (u64, u64), decoded: &DecodeStats| -> bool {
                batch.input = input;
                batch.stats = *decoded;
                let mut next = empty_rx.try_recv().unwrap_or_else(|_| Batch::new());
                next.segs.clear();
                next.bytes.clear();
                next.frames = 0;
                next.error = None;
                full_tx.send(std::mem::replace(batch, next)).is_ok()
            };
            let mut input = reading.progress();
            loop {
                // Frames go into the batch as libpcap hands them over; a full batch leaves at
                // once, with the input counted up to the last call (its progress lags by at most
                // one batch; the last batch's is exact).
                let mut gone = false;
                let r = reading.next_frames(BATCH, &mut |f| {
                    if !gone && batch.push(f, &mut decoded, &mut dedup) {
                        gone = !send(&mut batch, input, &decoded);
                    }
                });
                if gone {
                    return;
                }
                input = reading.progress();
                match r {
                    Ok(After::More) => {}
                    Ok(After::Idle) => {
                        if !send(&mut batch, input, &decoded) {
                            return;
                        }
                    }
                    Ok(After::End) => {
                        send(&mut batch, input, &decoded);
                        return;
                    }
                    Err(e) => {
                        let fatal = matches!(e, SourceError::Live { .. });
                        batch.error = Some(e);
                        if !send(&mut batch, input, &decoded) || fatal {
                            return;
                        }
                    }
                }
            }
        });
        if reader.is_err() {
            return None;
        }
        // This thread: decode, flows and the consumer, batch by batch in reading order. The
        // receiver is dropped on return, so a reader blocked on a full channel wakes up and ends.
        let full_rx = full_rx;
        for mut batch in full_rx.iter() {
            for s in &batch.segs {
                if !consumer.keep_going(stats) {
                    return Some(Stop::Asked);
                }
                table.push_hashed(&s.segment(&batch.bytes), s.hash, &mut |c| consumer.conn(c));
            }
            *stats = batch.stats;
            stats.input = batch.input;
            stats.evicted = table.stats.evicted_full;
            stats.peak_flows = table.stats.peak;
            errors.extend(batch.error.take());
            if !consumer.tick(table, stats) {
                return Some(Stop::Asked);
            }
            // The reader may be gone already; then the batch is simply dropped.
            let _ = empty_tx.send(batch);
        }
        Some(Stop::End)
    });
    // No second thread to be had (out of resources): do it all on this one.
    let Some(stop) = stop else { return run(source, table, stats, errors, consumer) };
    stats.evicted = table.stats.evicted_full;
    stats.peak_flows = table.stats.peak;
    stop
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Link, Skip, ACK, FIN, PSH, SYN};
    use crate::flow::FlowConfig;

    use crate::source::{MemorySource, Step};

    /// A frame between client 10.0.0.2:`client` and server 10.0.0.1:8080.
    fn frame(client: u16, to_server: bool, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        let (c, s) = (([10, 0, 0, 2], client), ([10, 0, 0, 1], 8080));
        let (src, dst) = if to_server { (c, s) } else { (s, c) };
        crate::testkit::frame(src, dst, flags, seq, ack, payload)
    }

    const EXCHANGES: u32 = 6000;

    /// Many batches' worth (more than fit in flight) of short exchanges, with a damaged file, idle moments and a non-TCP
    /// frame in between.
    fn script() -> Vec<Step> {
        let mut v = Vec::new();
        let mut t: Ts = 1_700_000_000_000_000_000;
        // Every other response is a full-size segment: batches then reach BATCH_BYTES before BATCH.
        let big = [&b"HTTP/1.1 200 OK\r\n\r\n"[..], &[b'x'; 1448][..]].concat();
        for i in 0..EXCHANGES {
            let port = 20000 + (i % 30000) as u16;
            let (c, s) = (i.wrapping_mul(7919), i.wrapping_mul(104_729));
            let rsp = if i % 2 == 0 { &big[..] } else { &big[..19] };
            let r = rsp.len() as u32;
            for (to_server, flags, seq, ack, payload) in [
                (true, SYN, c, 0, &b""[..]),
                (false, SYN | ACK, s, c + 1, &b""[..]),
                (true, ACK, c + 1, s + 1, &b""[..]),
                (true, PSH | ACK, c + 1, s + 1, &b"GET /health HTTP/1.1\r\n\r\n"[..]),
                (false, PSH | ACK, s + 1, c + 25, rsp),
                (true, FIN | ACK, c + 25, s + 1 + r, &b""[..]),
                (false, FIN | ACK, s + 1 + r, c + 26, &b""[..]),
                (true, ACK, c + 26, s + 2 + r, &b""[..]),
            ] {
                t += 700_000;
                v.push(Step::Frame(t, frame(port, to_server, flags, seq, ack, payload)));
            }
            if i % 500 == 7 {
                v.push(Step::Idle(std::time::Duration::ZERO));
                v.push(Step::Frame(t, vec![0u8; 60]));
            }
            if i == 1234 {
                v.push(Step::Error(SourceError::Damaged { path: "a.pcap".into(), frames: 7, msg: "cut".into() }));
            }
        }
        v
    }

    fn go(threaded: bool) -> (Vec<String>, DecodeStats, Vec<SourceError>) {
        let mut src = MemorySource::new(Link::Ethernet, script());
        let mut table = FlowTable::new(FlowConfig::default());
        let (mut stats, mut errors, mut conns) = (DecodeStats::default(), Vec::new(), Vec::new());
        let mut sink = |c: Conn| conns.push(format!("{c:?}"));
        let stop = if threaded {
            run_threaded(&mut src, &mut table, &mut stats, &mut errors, &mut sink)
        } else {
            run(&mut src, &mut table, &mut stats, &mut errors, &mut sink)
        };
        assert_eq!(stop, Stop::End);
        // Most connections were finished during the run (closed 5 s of packet time earlier).
        assert!(table.len() < EXCHANGES as usize / 2, "{} still open at the end", table.len());
        table.finish(&mut sink);
        (conns, stats, errors)
    }

    #[test]
    fn two_threads_give_the_same_connections_counters_and_errors() {
        let (one, s1, e1) = go(false);
        let (two, s2, e2) = go(true);
        assert_eq!(one.len(), EXCHANGES as usize);
        assert!(one == two, "connections differ between one and two threads");
        assert_eq!(e1, e2);
        assert_eq!(e1.len(), 1);
        assert_eq!((s1.frames, s1.tcp, s1.skipped, s1.wire_bytes), (s2.frames, s2.tcp, s2.skipped, s2.wire_bytes));
        assert_eq!((s1.first_ts, s1.last_ts, s1.peak_flows), (s2.first_ts, s2.last_ts, s2.peak_flows));
        assert_eq!(s1.frames, u64::from(EXCHANGES) * 8 + 12);
        assert_eq!(s1.skipped[Skip::NotIp as usize], 12);
    }

    #[test]
    fn a_consumer_that_stops_ends_the_reader_too() {
        struct StopAfter(usize);
        impl Consumer for StopAfter {
            fn conn(&mut self, _: Conn) {
                self.0 = self.0.saturating_sub(1);
            }
            fn keep_going(&mut self, _: &DecodeStats) -> bool {
                self.0 > 0
            }
        }
        let mut src = MemorySource::new(Link::Ethernet, script());
        let mut table = FlowTable::new(FlowConfig::default());
        let (mut stats, mut errors) = (DecodeStats::default(), Vec::new());
        let stop = run_threaded(&mut src, &mut table, &mut stats, &mut errors, &mut StopAfter(10));
        assert_eq!(stop, Stop::Asked);
        // The reader was stopped while at most a few batches ahead, not run to the end.
        assert!(src.position() < script().len(), "reader went on to the end");
    }

    /// An Ethernet frame as `-i any` hands it over: Linux cooked v2 on interface `ifindex`.
    fn sll2(ether: &[u8], ifindex: u32) -> Vec<u8> {
        let mut f = vec![0x08, 0x00, 0, 0];
        f.extend_from_slice(&ifindex.to_be_bytes());
        f.extend_from_slice(&[0, 1, 4, 6, 2, 2, 2, 2, 2, 2, 0, 0]);
        f.extend_from_slice(&ether[14..]);
        f
    }

    /// A probe and its answer; the client retransmits its request once (same interface, 0.3 ms later).
    fn exchange() -> Vec<(Ts, Vec<u8>)> {
        let mut t: Ts = 1_700_000_000_000_000_000;
        let mut v = Vec::new();
        let req = &b"GET /health HTTP/1.1\r\n\r\n"[..];
        for (to_server, flags, seq, ack, payload) in [
            (true, SYN, 100, 0, &b""[..]),
            (false, SYN | ACK, 900, 101, &b""[..]),
            (true, ACK, 101, 901, &b""[..]),
            (true, PSH | ACK, 101, 901, req),
            (true, PSH | ACK, 101, 901, req),
            (false, PSH | ACK, 901, 125, &b"HTTP/1.1 200 OK\r\n\r\n"[..]),
            (true, FIN | ACK, 125, 920, &b""[..]),
            (false, FIN | ACK, 920, 126, &b""[..]),
            (true, ACK, 126, 921, &b""[..]),
        ] {
            t += 300_000;
            v.push((t, frame(40000, to_server, flags, seq, ack, payload)));
        }
        v
    }

    fn run_frames(items: Vec<Step>, link: Link, threaded: bool) -> (Vec<Conn>, DecodeStats) {
        let mut src = MemorySource::new(link, items);
        let mut table = FlowTable::new(FlowConfig::default());
        let (mut stats, mut errors, mut conns) = (DecodeStats::default(), Vec::new(), Vec::new());
        let mut sink = |c: Conn| conns.push(c);
        if threaded {
            run_threaded(&mut src, &mut table, &mut stats, &mut errors, &mut sink);
        } else {
            run(&mut src, &mut table, &mut stats, &mut errors, &mut sink);
        }
        table.finish(&mut sink);
        (conns, stats)
    }

    /// `-i any` on a host with a bridge: every packet of a probe comes twice, from the veth and
    /// from the bridge, microseconds apart. Counted once, the connection is the one a capture on
    /// the veth alone gives — packets, bytes and history — and the retransmission is still there.
    #[test]
    fn each_packet_once_on_any_with_a_veth_and_a_bridge() {
        let once: Vec<Step> = exchange().into_iter().map(|(t, f)| Step::Frame(t, sll2(&f, 7))).collect();
        let twice: Vec<Step> = exchange()
            .into_iter()
            .flat_map(|(t, f)| [Step::Frame(t, sll2(&f, 7)), Step::Frame(t + 12_000, sll2(&f, 3))])
            .collect();
        for threaded in [false, true] {
            let (want, ws) = run_frames(once.clone(), Link::Sll2, threaded);
            let (got, gs) = run_frames(twice.clone(), Link::Sll2, threaded);
            assert_eq!((want.len(), got.len()), (1, 1));
            let key = |c: &Conn| {
                (
                    c.orig.pkts,
                    c.resp.pkts,
                    c.orig_bytes(),
                    c.resp_bytes(),
                    c.history.as_str().to_string(),
                    c.conn_state(),
                )
            };
            assert_eq!(key(&got[0]), key(&want[0]), "threaded: {threaded}");
            assert_eq!(want[0].orig.pkts, 6, "the retransmission on the same interface is kept");
            assert_eq!((gs.tcp, gs.duplicates, ws.duplicates), (9, 9, 0));
        }
        // The same copies a long time apart are not copies; nor is anything on an Ethernet capture.
        let late: Vec<Step> = exchange()
            .into_iter()
            .flat_map(|(t, f)| [Step::Frame(t, sll2(&f, 7)), Step::Frame(t + Dedup::WINDOW + 1, sll2(&f, 3))])
            .collect();
        assert_eq!(run_frames(late, Link::Sll2, false).1.duplicates, 0);
        let eth: Vec<Step> =
            exchange().into_iter().flat_map(|(t, f)| [Step::Frame(t, f.clone()), Step::Frame(t + 1, f)]).collect();
        let (c, s) = run_frames(eth, Link::Ethernet, false);
        assert_eq!((s.duplicates, c[0].orig.pkts), (0, 12));
    }
}
