//! Flow table: rebuilds every TCP connection from segments, with Zeek's conn.log semantics.
//!
//! This module is the table: it finds a segment's connection by its 5-tuple (hashed once, in a
//! slab of records), decides which side opened a connection first seen mid-stream, and finishes
//! connections when Zeek would remove them — five seconds of packet time after a close (so late
//! retransmissions still land in the right record), five seconds after an unanswered SYN, after
//! the inactivity timeout, or when the 5-tuple is reused by a new SYN — and when the table is
//! full (oldest first). All clocks are packet time.
//!
//! Zeek's seams, one module each. Mechanism: [`conn`] (a connection and its facts, one segment at
//! a time), [`endpoint`] (one side's TCP state machine and sequence tracking), [`history`] (the
//! letters). Policy: [`conn_state`] (conn.log's summary of a finished connection), which the
//! mechanism never calls. What a connection *was* (a probe, traffic) is decided in
//! [`crate::classify`].

pub(crate) mod config;
pub(crate) mod conn;
pub(crate) mod conn_state;
pub(crate) mod endpoint;
pub(crate) mod history;

pub use config::{FlowConfig, DEFAULT_MAX_FLOWS, SEC};
pub use conn::{Conn, EndReason, Facts, Stamp, REQ_CAP, RSP_CAP};
pub use conn_state::ConnState;

use crate::decode::{Addr, Segment, Ts, ACK, SYN};
use std::hash::BuildHasher;

/// Ports a server is likely to listen on, for choosing the direction of a flow seen mid-stream.
fn likely_server_port(p: u16) -> bool {
    p < 1024
        || matches!(
            p,
            1080 | 1433
                | 1521
                | 2049
                | 3128
                | 3306
                | 5432
                | 5672
                | 6379
                | 8000
                | 8008
                | 8080
                | 8081
                | 8443
                | 8888
                | 9000
                | 9090
                | 9200
                | 11211
                | 27017
        )
}

/// Whether a segment that opens a new record comes from the responder (Zeek's WantConnection).
fn flip_new(seg: &Segment<'_>) -> bool {
    if seg.has(SYN) && !seg.has(ACK) {
        return false;
    }
    if seg.has(SYN) && seg.has(ACK) {
        return true;
    }
    if likely_server_port(seg.sport) {
        if likely_server_port(seg.dport) {
            seg.sport < seg.dport
        } else {
            true
        }
    } else {
        false
    }
}

/// Direction-free key of a 5-tuple (TCP implied): the lower (address, port) end is `a`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Key {
    a: Addr,
    b: Addr,
    /// `a`'s port in the high half, `b`'s in the low.
    ports: u32,
}

impl Key {
    /// The key, and whether the segment was sent by its `a` side.
    #[inline]
    fn of(seg: &Segment<'_>) -> (Key, bool) {
        let from_a = (seg.src, seg.sport) <= (seg.dst, seg.dport);
        let (a, b, ap, bp) =
            if from_a { (seg.src, seg.dst, seg.sport, seg.dport) } else { (seg.dst, seg.src, seg.dport, seg.sport) };
        (Key { a, b, ports: u32::from(ap) << 16 | u32::from(bp) }, from_a)
    }

    /// A connection to itself (same address and port both ways): every packet is the originator's.
    fn is_loop(&self) -> bool {
        self.a == self.b && self.ports >> 16 == self.ports & 0xffff
    }
}

/// The flow table's hash of a key. foldhash, not Fx: Fx's weak low bits made probe sequences long
/// under a SYN flood's churn. A fixed seed, so that any thread computes the same hash.
#[inline]
fn key_hash(k: &Key) -> u64 {
    foldhash::fast::FixedState::default().hash_one(k)
}

/// The flow table's hash of a segment's connection (both directions alike), for computing ahead
/// of [`FlowTable::push_hashed`] on another thread.
#[inline]
pub(crate) fn flow_hash(seg: &Segment<'_>) -> u64 {
    key_hash(&Key::of(seg).0)
}

/// Counters about the table itself, for the summary.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TableStats {
    pub(crate) segments: u64,
    pub(crate) conns: u64,
    pub(crate) evicted_full: u64,
    pub(crate) peak: usize,
}

/// The flow table. Feed segments in (roughly) time order; finished connections come out through
/// the `sink` closure, with their [`EndReason`].
///
/// Records live in a slab indexed by the hash map, so the map moves 4-byte indices, not records,
/// and the sweep scans a dense array of removal times instead of the records themselves.
pub struct FlowTable {
    cfg: FlowConfig,
    /// Slot indices, found by the key's hash and compared against the slot's own key: the key is
    /// stored once and hashed once per packet.
    map: hashbrown::HashTable<u32>,
    slots: Vec<Option<(Key, Conn)>>,
    /// Per slot: when the connection is due to be finished (`Ts::MAX` for a free slot).
    expire: Vec<Ts>,
    /// Per slot: its last packet, for eviction when full.
    last: Vec<Ts>,
    free: Vec<u32>,
    now: Ts,
    next_sweep: Ts,
    doomed: Vec<(Ts, u32)>,
    pub(crate) stats: TableStats,
}

/// How often (packet time) the table is swept for expired connections.
const SWEEP_EVERY: Ts = SEC;

impl FlowTable {
    pub fn new(cfg: FlowConfig) -> Self {
        FlowTable {
            cfg,
            map: hashbrown::HashTable::new(),
            slots: Vec::new(),
            expire: Vec::new(),
            last: Vec::new(),
            free: Vec::new(),
            now: Ts::MIN,
            next_sweep: Ts::MIN,
            doomed: Vec::new(),
            stats: TableStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Iterates over the live connections (for live views).
    pub fn live(&self) -> impl Iterator<Item = &Conn> {
        self.slots.iter().flatten().map(|(_, c)| c)
    }

    /// Feeds one segment.
    #[inline]
    pub fn push(&mut self, seg: &Segment<'_>, sink: &mut impl FnMut(Conn)) {
        self.push_hashed(seg, flow_hash(seg), sink)
    }

    /// [`push`](Self::push) with the segment's [`flow_hash`] already computed (by another thread).
    pub fn push_hashed(&mut self, seg: &Segment<'_>, hash: u64, sink: &mut impl FnMut(Conn)) {
        self.stats.segments += 1;
        if seg.ts > self.now {
            self.now = seg.ts;
        }
        if self.now >= self.next_sweep {
            self.sweep_due(sink);
        }
        let (key, from_a) = Key::of(seg);
        debug_assert_eq!(hash, key_hash(&key));
        let slots = &self.slots;
        let found = self.map.find(hash, |&i| slots[i as usize].as_ref().is_some_and(|(k, _)| *k == key));
        let Some(&i) = found else { return self.insert(seg, key, from_a, hash, sink) };
        let i = i as usize;
        let Some((_, conn)) = self.slots[i].as_mut() else { unreachable!("mapped slots are full") };
        if seg.ts >= self.expire[i] || conn.is_reuse(seg) {
            return self.restart(i, seg, key, from_a, sink);
        }
        // The common case, kept small: the rare paths above are out of line.
        let is_orig = from_a == conn.orig_is_a || key.is_loop();
        conn.update(seg, is_orig, &self.cfg);
        self.expire[i] = conn.expire_at(&self.cfg);
        self.last[i] = conn.last_ts;
    }

    #[cold]
    #[inline(never)]
    fn sweep_due(&mut self, sink: &mut impl FnMut(Conn)) {
        self.sweep(self.now, sink);
        self.next_sweep = self.now.saturating_add(SWEEP_EVERY);
    }

    /// The segment's 5-tuple is in slot `i` but its connection is over (expired, or this SYN
    /// reuses the tuple): finish it and start a new one in the same slot.
    #[inline(never)]
    fn restart(&mut self, i: usize, seg: &Segment<'_>, key: Key, from_a: bool, sink: &mut impl FnMut(Conn)) {
        let Some((_, conn)) = self.slots[i].as_mut() else { unreachable!("mapped slots are full") };
        let expired = seg.ts >= self.expire[i];
        let flip = flip_new(seg);
        let mut old = std::mem::replace(conn, Conn::new(seg, flip, from_a != flip));
        old.end = if expired { old.end_reason_at(self.expire[i]) } else { EndReason::Reused };
        conn.update(seg, !flip || key.is_loop(), &self.cfg);
        self.expire[i] = conn.expire_at(&self.cfg);
        self.last[i] = conn.last_ts;
        self.stats.conns += 1;
        sink(old);
    }

    /// A segment of a connection not in the table: start one.
    #[inline(never)]
    fn insert(&mut self, seg: &Segment<'_>, key: Key, from_a: bool, hash: u64, sink: &mut impl FnMut(Conn)) {
        if self.map.len() >= self.cfg.max_flows {
            self.evict_oldest(sink);
        }
        let flip = flip_new(seg);
        let mut conn = Conn::new(seg, flip, from_a != flip);
        conn.update(seg, !flip || key.is_loop(), &self.cfg);
        let (exp, last) = (conn.expire_at(&self.cfg), conn.last_ts);
        let i = match self.free.pop() {
            Some(i) => {
                let u = i as usize;
                self.slots[u] = Some((key, conn));
                self.expire[u] = exp;
                self.last[u] = last;
                i
            }
            None => {
                self.slots.push(Some((key, conn)));
                self.expire.push(exp);
                self.last.push(last);
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        self.map.insert_unique(hash, i, |&j| slots[j as usize].as_ref().map_or(0, |(k, _)| key_hash(k)));
        self.stats.conns += 1;
        self.stats.peak = self.stats.peak.max(self.map.len());
    }

    /// Finishes every connection whose removal time has passed.
    pub(crate) fn sweep(&mut self, now: Ts, sink: &mut impl FnMut(Conn)) {
        self.doomed.clear();
        for (i, &e) in self.expire.iter().enumerate() {
            if now >= e {
                self.doomed.push((0, i as u32));
            }
        }
        self.finish_doomed(sink, None);
    }

    /// Table full: push out the least recently active eighth, so this runs rarely.
    fn evict_oldest(&mut self, sink: &mut impl FnMut(Conn)) {
        let mut ages: Vec<Ts> =
            self.slots.iter().zip(&self.last).filter(|(s, _)| s.is_some()).map(|(_, t)| *t).collect();
        if ages.is_empty() {
            return;
        }
        let k = (ages.len() / 8).max(1);
        let (_, cut, _) = ages.select_nth_unstable(k - 1);
        let cut = *cut;
        self.doomed.clear();
        for (i, s) in self.slots.iter().enumerate() {
            if s.is_some() && self.last[i] <= cut {
                self.doomed.push((0, i as u32));
            }
        }
        let n = self.doomed.len() as u64;
        self.finish_doomed(sink, Some(EndReason::Evicted));
        self.stats.evicted_full += n;
    }

    fn finish_doomed(&mut self, sink: &mut impl FnMut(Conn), reason: Option<EndReason>) {
        // Finished in start order so output is stable across runs; sort indices, not records.
        let mut doomed = std::mem::take(&mut self.doomed);
        for d in doomed.iter_mut() {
            d.0 = self.slots[d.1 as usize].as_ref().map_or(Ts::MAX, |(_, c)| c.first_ts);
        }
        doomed.sort_unstable();
        for &(_, i) in &doomed {
            let u = i as usize;
            if let Some((key, mut c)) = self.slots[u].take() {
                if let Ok(e) = self.map.find_entry(key_hash(&key), |&j| j == i) {
                    e.remove();
                }
                c.end = reason.unwrap_or_else(|| c.end_reason_at(self.expire[u]));
                self.expire[u] = Ts::MAX;
                self.free.push(i);
                sink(c);
            }
        }
        doomed.clear();
        self.doomed = doomed;
    }

    /// End of input: finishes everything still in the table.
    pub fn finish(&mut self, sink: &mut impl FnMut(Conn)) {
        self.doomed.clear();
        for (i, s) in self.slots.iter().enumerate() {
            if s.is_some() {
                self.doomed.push((0, i as u32));
            }
        }
        self.finish_doomed(sink, Some(EndReason::EndOfInput));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{FIN, PSH, RST};
    use proptest::prelude::*;

    const C: (u8, u16) = (2, 40000);
    const S: (u8, u16) = (1, 8080);

    /// A segment from `from` to the other side: times in ms, flags, seq, ack, payload length.
    fn seg(t_ms: i64, from: (u8, u16), flags: u8, seq: u32, ack: u32, len: u32) -> Segment<'static> {
        let to = if from == C { S } else { C };
        Segment {
            ts: 1_700_000_000 * SEC + t_ms * 1_000_000,
            src: Addr::v4([127, 0, 0, from.0]),
            dst: Addr::v4([127, 0, 0, to.0]),
            sport: from.1,
            dport: to.1,
            seq,
            ack,
            flags,
            window: Some(1000),
            payload_len: len,
            payload: &[],
        }
    }

    fn run(segs: &[Segment<'static>]) -> Vec<Conn> {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        for s in segs {
            t.push(s, &mut |c| out.push(c));
        }
        t.finish(&mut |c| out.push(c));
        out
    }

    fn one(segs: &[Segment<'static>]) -> (ConnState, String) {
        let v = run(segs);
        assert_eq!(v.len(), 1, "{v:?}");
        (v[0].conn_state(), v[0].history.as_str().to_string())
    }

    /// A clean request/response exchange closed by FINs both ways.
    fn clean_exchange() -> Vec<Segment<'static>> {
        vec![
            seg(0, C, SYN, 100, 0, 0),
            seg(1, S, SYN | ACK, 500, 101, 0),
            seg(2, C, ACK, 101, 501, 0),
            seg(3, C, ACK | PSH, 101, 501, 20),
            seg(4, S, ACK, 501, 121, 0),
            seg(5, S, ACK | PSH, 501, 121, 40),
            seg(6, C, ACK, 121, 541, 0),
            seg(7, C, FIN | ACK, 121, 541, 0),
            seg(8, S, FIN | ACK, 541, 122, 0),
            seg(9, C, ACK, 122, 542, 0),
        ]
    }

    #[test]
    fn halfopen_rst_probe_is_rsto() {
        // HAProxy's plain check on Linux: SYN, SYN-ACK, RST (no bare ACK).
        let (st, h) =
            one(&[seg(0, C, SYN, 100, 0, 0), seg(1, S, SYN | ACK, 500, 101, 0), seg(2, C, RST | ACK, 101, 501, 0)]);
        assert_eq!((st, h.as_str()), (ConnState::RSTO, "ShR"));
    }

    #[test]
    fn handshake_then_rst_probe() {
        let (st, h) = one(&[
            seg(0, C, SYN, 100, 0, 0),
            seg(1, S, SYN | ACK, 500, 101, 0),
            seg(2, C, ACK, 101, 501, 0),
            seg(3, C, RST | ACK, 101, 501, 0),
        ]);
        assert_eq!((st, h.as_str()), (ConnState::RSTO, "ShAR"));
    }

    #[test]
    fn refused_and_unanswered() {
        assert_eq!(one(&[seg(0, C, SYN, 100, 0, 0), seg(1, S, RST | ACK, 0, 101, 0)]), (ConnState::REJ, "Sr".into()));
        assert_eq!(one(&[seg(0, C, SYN, 100, 0, 0), seg(1000, C, SYN, 100, 0, 0)]), (ConnState::S0, "S".into()));
        assert_eq!(one(&[seg(0, C, SYN, 100, 0, 0), seg(5, C, RST, 101, 0, 0)]), (ConnState::RSTOS0, "SR".into()));
    }

    #[test]
    fn connect_then_fin_with_server_never_closing_is_s2() {
        let v = run(&[
            seg(0, C, SYN, 100, 0, 0),
            seg(1, S, SYN | ACK, 500, 101, 0),
            seg(2, C, ACK, 101, 501, 0),
            seg(3, C, FIN | ACK, 101, 501, 0),
            seg(4, S, ACK, 501, 102, 0),
        ]);
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].conn_state(), v[0].history.as_str()), (ConnState::S2, "ShAFa"));
        assert!(v[0].facts.resp_acked_orig_fin.is_some(), "the backend ACKed the FIN: CLOSE_WAIT");
    }

    #[test]
    fn clean_exchange_is_sf_with_facts() {
        let v = run(&clean_exchange());
        assert_eq!(v.len(), 1);
        let c = &v[0];
        assert_eq!((c.conn_state(), c.history.as_str()), (ConnState::SF, "ShADadFf"));
        assert_eq!((c.orig.pkts, c.resp.pkts, c.orig_bytes(), c.resp_bytes()), (6, 4, 20, 40));
        let f = c.facts;
        assert!(f.handshake_ack.is_some() && f.orig_data.is_some() && f.resp_data.is_some());
        assert!(f.orig_fin.get().unwrap() < f.resp_fin.get().unwrap(), "client closed first");
    }

    #[test]
    fn a_connection_to_itself_is_all_originator() {
        // Same address and port both ways (a TCP simultaneous open to oneself): every packet
        // counts as the originator's, whichever side the record was started from.
        let mut segs = vec![seg(0, S, SYN, 100, 0, 0), seg(1, S, SYN | ACK, 100, 101, 0), seg(2, S, ACK, 101, 101, 0)];
        for s in &mut segs {
            s.dst = s.src;
            s.dport = s.sport;
        }
        let v = run(&segs);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!((v[0].orig.pkts, v[0].resp.pkts), (3, 0));
        // Started from the SYN-ACK (a flipped record), it is still one-sided.
        let v = run(&segs[1..]);
        assert_eq!((v[0].orig.pkts, v[0].resp.pkts), (2, 0));
    }

    #[test]
    fn port_reuse_after_close_starts_a_new_connection() {
        let mut segs = clean_exchange();
        // Same 5-tuple, new ISN, one second later: a new probe from a reused source port.
        segs.push(seg(1000, C, SYN, 9000, 0, 0));
        segs.push(seg(1001, S, SYN | ACK, 7000, 9001, 0));
        segs.push(seg(1002, C, RST | ACK, 9001, 7001, 0));
        let v = run(&segs);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].end, EndReason::Reused);
        assert_eq!((v[1].conn_state(), v[1].history.as_str()), (ConnState::RSTO, "ShR"));
    }

    #[test]
    fn retransmitted_data_is_t_and_counted_once_in_bytes() {
        let mut segs = clean_exchange();
        segs.insert(4, seg(3, C, ACK | PSH, 101, 501, 20));
        let v = run(&segs);
        assert_eq!(v[0].history.as_str(), "ShADTadFf");
        assert_eq!(v[0].orig_bytes(), 20);
    }

    #[test]
    fn midstream_flow_takes_server_port_as_responder() {
        let v = run(&[seg(0, S, ACK | PSH, 500, 100, 10), seg(1, C, ACK, 100, 510, 0)]);
        assert_eq!((v[0].orig_p, v[0].resp_p), (40000, 8080));
        assert_eq!((v[0].conn_state(), v[0].history.as_str()), (ConnState::OTH, "^dA"));
    }

    #[test]
    fn table_cap_evicts_oldest_and_counts() {
        let mut t = FlowTable::new(FlowConfig { max_flows: 64, ..FlowConfig::default() });
        let mut out = 0;
        for i in 0..1000u32 {
            let mut s = seg(i64::from(i), C, SYN, i, 0, 0);
            s.sport = 1024 + i as u16;
            t.push(&s, &mut |_| out += 1);
            assert!(t.len() <= 64);
        }
        t.finish(&mut |_| out += 1);
        assert_eq!(out, 1000);
        assert!(t.stats.evicted_full > 0);
    }

    #[test]
    fn idle_connections_expire_by_packet_time() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        for s in &clean_exchange()[..6] {
            t.push(s, &mut |c| out.push(c));
        }
        assert!(out.is_empty());
        // An unrelated packet 301 s later sweeps the established-but-idle connection out.
        let mut late = seg(301_000, C, SYN, 1, 0, 0);
        late.sport = 1;
        t.push(&late, &mut |c| out.push(c));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].end, EndReason::Idle);
        assert_eq!(out[0].conn_state(), ConnState::S1);
    }

    #[test]
    fn an_unanswered_syn_ends_after_the_attempt_delay() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        t.push(&seg(0, C, SYN, 100, 0, 0), &mut |c| out.push(c));
        // 4.9 s later the attempt is still open; 5 s after the SYN it is over.
        let mut other = seg(4_900, C, SYN, 1, 0, 0);
        other.sport = 1;
        t.push(&other, &mut |c| out.push(c));
        t.sweep(1_700_000_000 * SEC + 4_999 * 1_000_000, &mut |c| out.push(c));
        assert!(out.is_empty(), "{out:?}");
        t.sweep(1_700_000_000 * SEC + 5_000 * 1_000_000, &mut |c| out.push(c));
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].end, out[0].conn_state(), out[0].orig_p), (EndReason::Attempt, ConnState::S0, 40000));
    }

    #[test]
    fn a_reset_after_our_own_fin_ends_the_record_after_the_close_delay() {
        // The client closes, the server only ACKs (CLOSE_WAIT), the client then resets: Zeek's
        // reset timer removes the record 5 s after the RST instead of waiting for the idle timeout.
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        for s in [
            seg(0, C, SYN, 100, 0, 0),
            seg(1, S, SYN | ACK, 500, 101, 0),
            seg(2, C, ACK, 101, 501, 0),
            seg(3, C, FIN | ACK, 101, 501, 0),
            seg(4, S, ACK, 501, 102, 0),
            seg(1_000, C, RST | ACK, 102, 501, 0),
        ] {
            t.push(&s, &mut |c| out.push(c));
        }
        t.sweep(1_700_000_000 * SEC + 5_999 * 1_000_000, &mut |c| out.push(c));
        assert!(out.is_empty(), "{out:?}");
        t.sweep(1_700_000_000 * SEC + 6_000 * 1_000_000, &mut |c| out.push(c));
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].end, out[0].history.as_str()), (EndReason::Closed, "ShAFaR"));
    }

    #[test]
    fn a_close_from_one_side_keeps_the_record_until_the_other_closes_or_it_idles() {
        // The server never closes (CLOSE_WAIT): nothing schedules the record's removal.
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        for s in [
            seg(0, C, SYN, 100, 0, 0),
            seg(1, S, SYN | ACK, 500, 101, 0),
            seg(2, C, ACK, 101, 501, 0),
            seg(3, C, FIN | ACK, 101, 501, 0),
            seg(4, S, ACK, 501, 102, 0),
        ] {
            t.push(&s, &mut |c| out.push(c));
        }
        t.sweep(1_700_000_000 * SEC + 60_000 * 1_000_000, &mut |c| out.push(c));
        assert!(out.is_empty(), "{out:?}");
        t.sweep(1_700_000_000 * SEC + 304_004 * 1_000_000, &mut |c| out.push(c));
        assert_eq!((out.len(), out[0].end, out[0].conn_state()), (1, EndReason::Idle, ConnState::S2));
    }

    #[test]
    fn a_stamp_is_set_once_and_reads_like_an_option() {
        let mut s = Stamp::default();
        assert_eq!((s.get(), s.is_some(), s.is_none(), format!("{s:?}")), (None, false, true, "None".into()));
        assert!(!s.is_some_and(|_| true) && s.is_none_or(|_| false) && s.into_iter().next().is_none());
        s.first(5);
        s.first(7);
        assert_eq!((s.get(), s.is_some(), s.is_none(), format!("{s:?}")), (Some(5), true, false, "Some(5)".into()));
        assert!(s.is_some_and(|t| t == 5) && !s.is_some_and(|t| t == 7));
        assert!(s.is_none_or(|t| t == 5) && !s.is_none_or(|t| t == 7));
        assert_eq!(s.into_iter().collect::<Vec<_>>(), [5]);
    }

    #[test]
    fn the_first_payload_each_way_is_kept_with_what_its_headers_name() {
        static REQ: &[u8] = b"GET /health HTTP/1.1\r\nHost: backend:8080\r\nAccept: */*\r\nX-Pad: 0123456789\r\nUser-Agent: kube-probe/1.29\r\n\r\n";
        static RSP: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22\r\n\r\n";
        let mut segs = clean_exchange();
        (segs[3].payload, segs[3].payload_len) = (REQ, REQ.len() as u32);
        (segs[5].payload, segs[5].payload_len) = (RSP, RSP.len() as u32);
        // Later payloads change nothing.
        let mut again = seg(6, C, ACK | PSH, 101 + REQ.len() as u32, 541, 5);
        again.payload = b"hello";
        segs.insert(6, again);
        let v = run(&segs);
        let c = &v[0];
        assert_eq!((c.request(), c.response()), (&REQ[..REQ_CAP], &RSP[..RSP_CAP]));
        assert!(REQ.len() > REQ_CAP, "the User-Agent lies beyond the bytes kept");
        let names = |i: u8| usize::from(i).checked_sub(1);
        assert_eq!(names(c.facts.user_agent).map(|i| crate::http::PROBE_AGENTS[i]), Some("kube-probe"));
        assert_eq!(names(c.facts.server).map(|i| crate::http::SERVER_TOKENS[i]), Some("nginx"));
        assert_eq!((c.facts.orig_data.get(), c.facts.resp_data.get()), (Some(segs[3].ts), Some(segs[5].ts)));
    }

    #[test]
    fn a_syn_with_the_same_isn_is_a_retransmission_until_a_side_closes() {
        let open = [seg(0, C, SYN, 100, 0, 0), seg(1, S, SYN | ACK, 500, 101, 0), seg(2, C, ACK, 101, 501, 0)];
        let again = seg(1_000, C, SYN, 100, 0, 0);
        assert_eq!(run(&[&open[..], &[again]].concat()).len(), 1);
        // Once the client has closed, the same SYN opens a new connection.
        let v = run(&[&open[..], &[seg(3, C, FIN | ACK, 101, 501, 0), again]].concat());
        assert_eq!((v.len(), v[0].end), (2, EndReason::Reused));
        // Likewise once the server has.
        let v = run(&[&open[..], &[seg(3, S, FIN | ACK, 501, 101, 0), again]].concat());
        assert_eq!((v.len(), v[0].end), (2, EndReason::Reused));
    }

    #[test]
    fn timers_refused_connections_close_and_one_way_flows_idle() {
        let ends = |segs: &[Segment<'static>], at_ms: i64| {
            let mut t = FlowTable::new(FlowConfig::default());
            let mut out = Vec::new();
            for s in segs {
                t.push(s, &mut |c| out.push(c));
            }
            t.sweep(1_700_000_000 * SEC + at_ms * 1_000_000, &mut |c| out.push(c));
            out.iter().map(|c| c.end).collect::<Vec<_>>()
        };
        // Refused a second after the SYN: removed 5 s after the RST, not at the SYN's attempt timer.
        let refused = [seg(0, C, SYN, 100, 0, 0), seg(1_000, S, RST | ACK, 0, 101, 0)];
        assert_eq!(ends(&refused, 5_999), []);
        assert_eq!(ends(&refused, 6_000), [EndReason::Closed]);
        // Data one way, seen mid-stream: the full inactivity timeout, not the handshake's.
        let one_way = [seg(0, C, ACK | PSH, 100, 1, 10)];
        assert_eq!(ends(&one_way, 299_999), []);
        assert_eq!(ends(&one_way, 300_000), [EndReason::Idle]);
    }

    #[test]
    fn a_syn_answering_our_own_syn_ack_on_a_loop_is_not_a_new_connection() {
        // Zeek's IsReuse exception for a SYN/SYN-ACK role reversal; only a connection to itself
        // reaches it here (a SYN-ACK from anyone else makes its sender the responder).
        let looped = |segs: &mut [Segment<'static>]| {
            for s in segs.iter_mut() {
                (s.dst, s.dport) = (s.src, s.sport);
            }
            run(segs).len()
        };
        assert_eq!(looped(&mut [seg(0, S, SYN | ACK, 100, 1, 0), seg(1, S, SYN, 0, 0, 0)]), 1);
        assert_eq!(looped(&mut [seg(0, S, SYN | ACK, 100, 1, 0), seg(1, S, SYN, 7, 0, 0)]), 2);
        assert_eq!(looped(&mut [seg(0, S, SYN | ACK, 100, 1, 0), seg(1, S, SYN | ACK, 0, 0, 0)]), 1);
    }

    #[test]
    fn only_a_bare_ack_takes_the_plain_ack_path() {
        // SYN, FIN and RST at once, without ACK: the general path, Zeek's I letter.
        assert_eq!(one(&[seg(0, C, SYN | FIN | RST, 100, 0, 0)]).1, "I");
        assert_eq!(one(&[seg(0, C, ACK | PSH, 100, 1, 0)]).1, "A");
    }

    #[test]
    fn a_zero_window_is_w_unless_a_reset_or_the_peers_fin_makes_it_moot() {
        let open = [seg(0, C, SYN, 100, 0, 0), seg(1, S, SYN | ACK, 500, 101, 0), seg(2, C, ACK, 101, 501, 0)];
        let zero = |mut s: Segment<'static>| {
            s.window = Some(0);
            s
        };
        let history = |tail: &[Segment<'static>]| one(&[&open[..], tail].concat()).1;
        assert_eq!(history(&[zero(seg(3, C, ACK, 101, 501, 0))]), "ShAW");
        assert_eq!(history(&[zero(seg(3, C, RST | ACK, 101, 501, 0))]), "ShAR");
        assert_eq!(history(&[seg(3, S, FIN | ACK, 501, 101, 0), zero(seg(4, C, ACK, 101, 502, 0))]), "ShAf");
        assert_eq!(history(&[seg(3, C, RST | ACK, 101, 501, 0), zero(seg(4, C, ACK, 101, 501, 0))]), "ShAR");
    }

    #[test]
    fn a_gap_in_the_first_byte_counts_only_when_both_sides_were_seen_opening() {
        // The server acknowledges one client byte the capture never saw.
        let opened = [seg(0, C, SYN, 100, 0, 0), seg(1, S, SYN | ACK, 500, 101, 0), seg(2, C, ACK, 101, 501, 0)];
        assert_eq!(one(&[&opened[..], &[seg(3, S, ACK, 501, 102, 0)]].concat()).1, "ShAaG");
        // The server's first segment was a bare ACK, not its SYN-ACK: a partial connection.
        let partial = [
            seg(0, C, SYN, 100, 0, 0),
            seg(1, S, ACK, 500, 101, 0),
            seg(2, S, SYN | ACK, 500, 101, 0),
            seg(3, C, ACK, 101, 501, 0),
            seg(4, S, ACK, 501, 102, 0),
        ];
        assert_eq!(one(&partial).1, "SahA");
    }

    #[test]
    fn facts_record_the_first_of_each_event_each_way() {
        let segs = clean_exchange();
        let t = |i: usize| Some(segs[i].ts);
        let f = run(&segs)[0].facts;
        assert_eq!((f.syn.get(), f.syn_count, f.synack.get(), f.synack_count), (t(0), 1, t(1), 1));
        assert_eq!((f.handshake_ack.get(), f.orig_data.get(), f.resp_data.get()), (t(2), t(3), t(5)));
        assert_eq!((f.orig_fin.get(), f.resp_fin.get(), f.resp_acked_orig_fin.get()), (t(7), t(8), t(8)));
        assert_eq!((f.orig_rst.get(), f.resp_rst.get()), (None, None));
        // A retransmitted SYN is counted (a bare RST is not); data right after the SYN-ACK leaves
        // no bare ACK.
        let data_first = [
            seg(0, C, SYN, 100, 0, 0),
            seg(1, C, SYN, 100, 0, 0),
            seg(2, S, SYN | ACK, 500, 101, 0),
            seg(3, C, ACK | PSH, 101, 501, 20),
            seg(4, C, ACK, 121, 501, 0),
            seg(5, C, RST, 121, 0, 0),
        ];
        let f = run(&data_first)[0].facts;
        assert_eq!((f.syn_count, f.handshake_ack.get(), f.orig_data.get()), (2, None, Some(data_first[3].ts)));
    }

    #[test]
    fn a_half_closed_connection_stays_alive_while_packets_flow() {
        // Zeek freezes LastTime only once both sides have closed.
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        for s in [
            seg(0, C, SYN, 100, 0, 0),
            seg(1, S, SYN | ACK, 500, 101, 0),
            seg(2, C, ACK, 101, 501, 0),
            seg(3, C, FIN | ACK, 101, 501, 0),
            seg(200_000, S, ACK | PSH, 501, 102, 10),
        ] {
            t.push(&s, &mut |c| out.push(c));
        }
        t.sweep(1_700_000_000 * SEC + 400_000 * 1_000_000, &mut |c| out.push(c));
        assert!(out.is_empty(), "{out:?}");
        t.sweep(1_700_000_000 * SEC + 500_000 * 1_000_000, &mut |c| out.push(c));
        assert_eq!(out.len(), 1);
    }

    /// The table's memory is its records: the split into modules kept their measured sizes.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn flow_records_keep_their_measured_size() {
        use super::{endpoint::Endpoint, history::History};
        use std::mem::size_of;
        let sizes = (size_of::<Conn>(), size_of::<Endpoint>(), size_of::<Facts>(), size_of::<History>());
        assert_eq!(sizes, (448, 80, 88, 25));
    }

    #[test]
    fn payload_bytes_are_zeeks_sizes() {
        let bytes = |segs: &[Segment<'static>]| {
            let v = run(segs);
            assert_eq!(v.len(), 1, "{v:?}");
            (v[0].orig_bytes(), v[0].resp_bytes())
        };
        // A RST after an unanswered SYN counts nothing, wherever its sequence number points.
        assert_eq!(bytes(&[seg(0, C, SYN, 100, 0, 0), seg(1, C, RST, 5000, 0, 0)]), (0, 0));
        // Data to a peer that never answers is counted ...
        assert_eq!(bytes(&[seg(0, C, SYN, 100, 0, 0), seg(1, C, ACK | PSH, 101, 1, 20)]), (20, 0));
        // ... and so is data closed by a FIN before any answer, without the SYN and FIN octets,
        assert_eq!(bytes(&[seg(0, C, SYN, 100, 0, 0), seg(1, C, FIN | ACK | PSH, 101, 1, 10)]), (10, 0));
        // ... and data seen mid-stream, then reset.
        assert_eq!(bytes(&[seg(0, C, ACK | PSH, 100, 1, 10), seg(1, C, RST, 110, 0, 0)]), (10, 0));
    }

    #[test]
    fn content_gaps_are_g_only_while_both_sides_are_clean() {
        // The server acknowledges 40 bytes of which the capture saw 20: a gap, once established ...
        let handshake = [seg(0, C, SYN, 100, 0, 0), seg(1, S, SYN | ACK, 500, 101, 0), seg(2, C, ACK, 101, 501, 0)];
        let gap = [seg(3, C, ACK | PSH, 101, 501, 20), seg(4, S, ACK, 501, 141, 0)];
        assert_eq!(one(&[&handshake[..], &gap[..]].concat()).1, "ShADaG");
        // ... and before the client's FIN (20 bytes never captured), still on a clean connection.
        let fin_then_gap = [seg(3, C, FIN | ACK, 121, 501, 0), seg(4, S, ACK, 501, 122, 0)];
        assert_eq!(one(&[&handshake[..], &fin_then_gap[..]].concat()).1, "ShAFaG");
        // Seen mid-stream, or after a reset, the connection is not clean: no gap letter.
        assert_eq!(one(&gap).1, "Da");
        let rst_then_ack = [seg(3, C, RST | ACK, 121, 501, 0), seg(4, S, ACK, 501, 121, 0)];
        assert_eq!(one(&[&handshake[..], &rst_then_ack[..]].concat()).1, "ShARa");
    }

    #[test]
    fn acknowledged_bytes_count_when_their_data_was_not_captured() {
        // Zeek's Size() takes the higher of the last sequence sent and the last acknowledged.
        let v = run(&[
            seg(0, C, SYN, 100, 0, 0),
            seg(1, S, SYN | ACK, 500, 101, 0),
            seg(2, C, ACK, 101, 501, 0),
            seg(3, S, ACK, 501, 131, 0),
        ]);
        assert_eq!((v[0].orig_bytes(), v[0].resp_bytes()), (30, 0));
    }

    fn arb_seg() -> impl Strategy<Value = Segment<'static>> {
        (0i64..5000, any::<bool>(), 0u8..64, 0u32..2000, 0u32..2000, 0u32..100, 0u16..3).prop_map(
            |(t, from_c, flags, seq, ack, len, w)| {
                let mut s = seg(t, if from_c { C } else { S }, flags, seq, ack, len);
                s.window = if w == 0 { Some(0) } else { Some(512) };
                s
            },
        )
    }

    proptest! {
        /// Any sequence of segments: no panic, and every packet lands in exactly one record.
        #[test]
        fn arbitrary_segments_are_all_accounted(mut segs in proptest::collection::vec(arb_seg(), 0..60)) {
            segs.sort_by_key(|s| s.ts);
            let v = run(&segs);
            let pkts: u64 = v.iter().map(|c| u64::from(c.orig.pkts + c.resp.pkts)).sum();
            prop_assert_eq!(pkts, segs.len() as u64);
            for c in &v {
                let _ = c.conn_state();
                prop_assert!(c.history.as_str().is_ascii());
            }
        }

        /// Duplicated packets (retransmissions, capture duplicates) never change how a clean
        /// exchange ended, and every copy is counted.
        #[test]
        fn duplicates_keep_sf(dups in proptest::collection::vec(1usize..10, 0..6)) {
            let base = clean_exchange();
            let mut segs = base.clone();
            for &i in dups.iter().rev() {
                let d = base[i];
                let pos = segs.iter().position(|s| s.ts == d.ts && s.seq == d.seq && s.flags == d.flags).unwrap();
                segs.insert(pos + 1, d);
            }
            let v = run(&segs);
            prop_assert_eq!(v.len(), 1);
            prop_assert_eq!(v[0].conn_state(), ConnState::SF);
            prop_assert_eq!(u64::from(v[0].orig.pkts + v[0].resp.pkts), segs.len() as u64);
        }

        /// Reordering the established phase (data and ACKs arriving out of order) keeps SF and the
        /// byte counts.
        #[test]
        fn reordered_middle_keeps_sf(perm in Just((3usize..7).collect::<Vec<_>>()).prop_shuffle()) {
            let base = clean_exchange();
            let mut segs: Vec<_> = base[..3].to_vec();
            segs.extend(perm.iter().map(|&i| base[i]));
            segs.extend_from_slice(&base[7..]);
            let v = run(&segs);
            prop_assert_eq!(v.len(), 1);
            prop_assert_eq!(v[0].conn_state(), ConnState::SF);
            prop_assert_eq!((v[0].orig_bytes(), v[0].resp_bytes()), (20, 40));
        }
    }
}
