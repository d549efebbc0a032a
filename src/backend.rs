//! Backend aggregates: per server address:port, what reached it over time — connections grouped by
//! source and request, each group's events and the sockets its connections visibly hold, bucketed
//! by packet time. Memory does not grow with the number of connections: buckets coarsen as time
//! passes, groups and backends are capped, and only a bounded ring of recent start times is kept
//! per group for rhythm estimates.

use crate::classify::{self, Agent, Ending, GroupVotes, Shape};
use crate::decode::Ts;
use crate::flow::Conn;
use crate::http;
use rustc_hash::FxHashMap;
use std::net::IpAddr;

/// Most buckets per series before they are merged pairwise.
pub(crate) const MAX_BUCKETS: usize = 1024;
const START_WIDTH: Ts = 50_000_000;
/// Groups per backend, and in all: past these, connections go to "other clients" buckets.
const MAX_GROUPS: usize = 4096;
const MAX_GROUPS_TOTAL: usize = 1 << 16;
const MAX_BACKENDS: usize = 4096;
const RING: usize = 512;

/// Counts per time bucket; all series of one [`Backends`] share origin and width.
#[derive(Clone, Debug, Default)]
pub(crate) struct Series(pub Vec<i32>);

impl Series {
    pub(crate) fn add(&mut self, idx: usize, v: i32) {
        if self.0.len() <= idx {
            self.0.resize(idx + 1, 0);
        }
        self.0[idx] += v;
    }
    pub(crate) fn add_from(&mut self, other: &Series) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a += b;
        }
    }
}

/// A series kept sparse: `(bucket, count)` sorted by bucket. Most groups hold a handful of
/// connections, so a dense vector per group would cost a bucket per 50 ms of the capture for each.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sparse(Vec<(u32, i32)>);

impl Sparse {
    fn add(&mut self, idx: usize, v: i32) {
        let idx = u32::try_from(idx).unwrap_or(u32::MAX);
        match self.0.last_mut() {
            Some(l) if l.0 == idx => l.1 += v,
            Some(l) if l.0 > idx => match self.0.binary_search_by_key(&idx, |e| e.0) {
                Ok(i) => self.0[i].1 += v,
                Err(i) => self.0.insert(i, (idx, v)),
            },
            _ => {
                // Small series stay small (most groups hold a few connections).
                if self.0.len() < 4 {
                    self.0.reserve_exact(1);
                }
                self.0.push((idx, v))
            }
        }
    }
    fn coarsen(&mut self) {
        let mut w = 0;
        for r in 0..self.0.len() {
            let (i, v) = self.0[r];
            if w > 0 && self.0[w - 1].0 == i / 2 {
                self.0[w - 1].1 += v;
            } else {
                self.0[w] = (i / 2, v);
                w += 1;
            }
        }
        self.0.truncate(w);
    }
    fn shift(&mut self, k: usize) {
        let k = u32::try_from(k).unwrap_or(u32::MAX);
        for e in &mut self.0 {
            e.0 = e.0.saturating_add(k);
        }
    }
    /// Adds this series into a dense one.
    pub(crate) fn add_into(&self, dense: &mut Series) {
        for &(i, v) in &self.0 {
            dense.add(i as usize, v);
        }
    }
}

/// A bounded ring of timestamps (the most recent `RING`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Ring {
    buf: Vec<Ts>,
    next: usize,
}

impl Ring {
    fn push(&mut self, t: Ts) {
        if self.buf.len() < RING {
            if self.buf.len() < 4 {
                self.buf.reserve_exact(1);
            }
            self.buf.push(t);
        } else {
            self.buf[self.next] = t;
            self.next = (self.next + 1) % RING;
        }
    }
    pub(crate) fn sorted(&self) -> Vec<Ts> {
        let mut v = self.buf.clone();
        v.sort_unstable();
        v
    }
}

/// Connections to one backend from one source with one shape and request. Groups never mix
/// sources or shapes; connections that cannot be a prober's, and those past the caps, share a
/// bucket per shape (`overflow`) that is never a prober.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub(crate) src: IpAddr,
    pub(crate) shape: Shape,
    /// A shared bucket (many sources: past the group caps, or clients that cannot be probers):
    /// never a prober, whatever its votes.
    pub(crate) overflow: bool,
    /// `GET /health`, for HTTP groups.
    pub(crate) request: Option<String>,
    pub(crate) votes: GroupVotes,
    /// What the group's connections did, by how they ended: only the endings seen (most groups
    /// see one or two), so that thousands of small client groups stay small.
    pub(crate) by_ending: Vec<ByEnding>,
    /// Sockets this group's connections visibly hold on the server (+1 established, −1 released).
    pub(crate) held: Sparse,
    pub(crate) held_now: u64,
    pub(crate) starts: Ring,
    pub(crate) statuses: Vec<(u16, u64)>,
    pub(crate) response_time_sum_s: f64,
    pub(crate) response_time_n: u64,
    pub(crate) first: Ts,
    pub(crate) last: Ts,
    /// Connections that carried a request and got at least one response byte.
    pub(crate) answered: u64,
    /// Starts of connections whose request got no response byte (the most recent ones), and how
    /// many there were in all. Whether that is a failure depends on what the group normally gets.
    pub(crate) stalled: Ring,
    pub(crate) stalled_total: u64,
    /// Start of the latest connection the server SYN-ACKed, and of the latest that got a response.
    pub(crate) last_synack: Option<Ts>,
    pub(crate) last_response: Option<Ts>,
}

impl Group {
    fn new(src: IpAddr, shape: Shape, overflow: bool, request: Option<String>, t: Ts) -> Group {
        Group {
            src,
            shape,
            overflow,
            request,
            votes: GroupVotes::default(),
            by_ending: Vec::new(),
            held: Sparse::default(),
            held_now: 0,
            starts: Ring::default(),
            statuses: Vec::new(),
            response_time_sum_s: 0.0,
            response_time_n: 0,
            first: t,
            last: t,
            answered: 0,
            stalled: Ring::default(),
            stalled_total: 0,
            last_synack: None,
            last_response: None,
        }
    }
    pub(crate) fn count(&self) -> u64 {
        self.votes.count
    }
    /// The ending most of the group's connections had (ties: the first in [`Ending::ALL`]).
    pub(crate) fn main_ending(&self) -> Ending {
        let rank = |e: Ending| Ending::ALL.iter().position(|x| *x == e).unwrap_or(0);
        self.by_ending
            .iter()
            .max_by_key(|b| (b.count, std::cmp::Reverse(rank(b.ending))))
            .map_or(Ending::ALL[0], |b| b.ending)
    }
    /// The record of one ending, made on first use.
    fn ending_mut(&mut self, ending: Ending) -> &mut ByEnding {
        let i = match self.by_ending.iter().position(|b| b.ending == ending) {
            Some(i) => i,
            None => {
                // Most groups see one ending: grow one at a time, not by the allocator's four.
                self.by_ending.reserve_exact(1);
                self.by_ending.push(ByEnding { ending, ..ByEnding::default() });
                self.by_ending.len() - 1
            }
        };
        &mut self.by_ending[i]
    }
    /// What this group's connections normally get back: a response, when nine in ten of those
    /// before its last answered one got one. A check that never gets a reply by design (HAProxy's
    /// `tcp-check send` without `expect`, or a server that answers only some of them) does not.
    pub(crate) fn expects_response(&self) -> bool {
        let Some(last) = self.last_response else { return false };
        let after = self.stalled.buf.iter().filter(|t| **t > last).count() as u64;
        let before = self.stalled_total.saturating_sub(after);
        self.answered >= 3 && before * 10 <= self.answered + before
    }
    /// The start of the latest connection that got what this group normally gets.
    pub(crate) fn last_normal_answer(&self) -> Option<Ts> {
        if self.expects_response() {
            self.last_response
        } else {
            self.last_synack
        }
    }
    /// Starts of connections that did not get what this group normally gets (recent ones).
    pub(crate) fn failures(&self) -> impl Iterator<Item = Ts> + '_ {
        let expects = self.expects_response();
        self.stalled.buf.iter().copied().filter(move |_| expects)
    }
    fn series_mut(&mut self) -> impl Iterator<Item = &mut Sparse> {
        self.by_ending.iter_mut().flat_map(|b| [&mut b.events, &mut b.abandoned]).chain(std::iter::once(&mut self.held))
    }
}

/// What a group's connections with one ending did.
#[derive(Clone, Debug, Default)]
pub(crate) struct ByEnding {
    pub(crate) ending: Ending,
    pub(crate) count: u64,
    /// Arrivals.
    pub(crate) events: Sparse,
    /// Sockets the server keeps after the client closed and it ACKed the FIN without ever closing
    /// its side (CLOSE_WAIT): the leak the wire can see. Open connections both sides keep are not
    /// in here — long-lived connections are not leaks.
    pub(crate) abandoned: Sparse,
    pub(crate) close_wait_now: u64,
    /// Connections the client reset after the server's kernel had accepted them (handshake
    /// completed) and before the server closed: each may leave a socket behind.
    pub(crate) resets_after_accept: u64,
}

/// Everything seen about one server address:port.
#[derive(Clone, Debug)]
pub(crate) struct Backend {
    pub(crate) ip: IpAddr,
    pub(crate) port: u16,
    pub(crate) groups: Vec<Group>,
    /// Where each (source, shape, request) has its group.
    index: FxHashMap<(IpAddr, Shape, u64), u32>,
    /// The shared buckets: shape, why, group index.
    buckets: Vec<(Shape, Bucket, u32)>,
    pub(crate) conns: u64,
    /// Connections filed in "other clients" buckets (overflow groups) because of the group caps.
    pub(crate) other_clients: u64,
    pub(crate) first: Ts,
    pub(crate) last: Ts,
    /// Starts of connections whose SYNs nobody answered.
    pub(crate) failed: Ring,
    pub(crate) refused: Ring,
    /// Connections whose SYN-ACK was retransmitted (the client's ACK got lost or dropped).
    pub(crate) synack_retransmits: u64,
    /// The server's application was seen at work: it sent a response byte or closed a connection.
    pub(crate) app_spoke: bool,
    /// Handshakes the server's kernel completed (SYN-ACKs), over time.
    pub(crate) synacked: Sparse,
    /// The server software its responses last named (`Server:` header), index + 1 into
    /// [`http::SERVER_TOKENS`]; 0 when none did.
    pub(crate) server: u8,
}

impl Backend {
    fn new(ip: IpAddr, port: u16, t: Ts) -> Self {
        Backend {
            ip,
            port,
            groups: Vec::new(),
            index: FxHashMap::default(),
            buckets: Vec::new(),
            conns: 0,
            other_clients: 0,
            first: t,
            last: t,
            failed: Ring::default(),
            refused: Ring::default(),
            synack_retransmits: 0,
            app_spoke: false,
            synacked: Sparse::default(),
            server: 0,
        }
    }
    /// Start of the latest connection the server answered the way it normally does.
    pub(crate) fn last_answered(&self) -> Option<Ts> {
        self.groups.iter().filter_map(Group::last_normal_answer).max()
    }
    /// The group for a connection: its source's own, created when there is room; else the shape's
    /// "other clients" bucket. Connections that cannot be a prober's whatever their group's vote —
    /// ordinary traffic with no beginning or no request (`Other`), and requests that carry a
    /// user's User-Agent — share a bucket per shape from the start: busy backends see thousands
    /// of such clients, and a group each would cost memory and time for nothing. `budget` is what
    /// is left of the table-wide cap on groups.
    fn group_for(&mut self, tr: &classify::Traits, src: IpAddr, budget: &mut usize, c: &Conn) -> usize {
        let users =
            tr.shape == Shape::Other || (tr.agent == Agent::Other && matches!(tr.shape, Shape::Http | Shape::Data));
        if users {
            return self.bucket(tr.shape, Bucket::Users, c);
        }
        if let Some(&i) = self.index.get(&(src, tr.shape, tr.signature)) {
            return i as usize;
        }
        if self.index.len() >= MAX_GROUPS || *budget == 0 {
            self.other_clients += 1;
            return self.bucket(tr.shape, Bucket::Capped, c);
        }
        let request = tr.request.map(|(m, p)| format!("{m} {p}"));
        self.groups.push(Group::new(src, tr.shape, false, request, c.first_ts));
        let i = self.groups.len() - 1;
        *budget -= 1;
        self.index.insert((src, tr.shape, tr.signature), i as u32);
        i
    }

    /// The shared bucket of one shape (made on first use).
    fn bucket(&mut self, shape: Shape, why: Bucket, c: &Conn) -> usize {
        if let Some(&(_, _, i)) = self.buckets.iter().find(|b| b.0 == shape && b.1 == why) {
            return i as usize;
        }
        let unspecified = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        self.groups.push(Group::new(unspecified, shape, true, None, c.first_ts));
        let i = self.groups.len() - 1;
        self.buckets.push((shape, why, i as u32));
        i
    }
}

/// Why connections share a bucket instead of their source's own group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bucket {
    /// Past the group caps.
    Capped,
    /// They cannot be a prober's (no request, or a user's User-Agent).
    Users,
}

/// The time axis shared by all series.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeline {
    pub(crate) origin: Ts,
    pub(crate) width: Ts,
    pub(crate) buckets: usize,
}

impl Timeline {
    /// Start time of bucket `i`'s end (the instant a cumulative value at `i` is valid for).
    pub(crate) fn end_of(&self, i: usize) -> Ts {
        let e = i128::from(self.origin) + (i as i128 + 1) * i128::from(self.width);
        e.clamp(i128::from(Ts::MIN), i128::from(Ts::MAX)) as Ts
    }
    /// Bucket of a time; `None` before the origin.
    pub(crate) fn index(&self, t: Ts) -> Option<usize> {
        if t < self.origin {
            return None;
        }
        // 64-bit division unless the span overflows (damaged timestamps decades apart).
        Some(match t.checked_sub(self.origin) {
            Some(d) => (d / self.width) as usize,
            None => ((i128::from(t) - i128::from(self.origin)) / i128::from(self.width)) as usize,
        })
    }
}

/// All backends. Feed it finished connections with [`Backends::add`].
#[derive(Clone, Debug)]
pub struct Backends {
    pub(crate) timeline: Option<Timeline>,
    pub(crate) map: FxHashMap<(IpAddr, u16), Backend>,
    /// Connections to backends beyond the cap, not aggregated.
    pub(crate) overflow: u64,
    /// Groups that may still be made, table-wide.
    group_budget: usize,
}

impl Default for Backends {
    fn default() -> Self {
        Self::new()
    }
}

/// When a connection counts as arriving: its first packet. A server that never closes a socket
/// holds it from accept() on, so its socket count steps up with arrivals, not with closes.
pub(crate) fn event_ts(c: &Conn) -> Ts {
    c.first_ts
}

/// The interval during which the server's kernel visibly held a socket for this connection:
/// from the handshake to the first reset or the server's own FIN. `None` end means still held.
/// A client FIN alone does not release it (that is CLOSE_WAIT until the server closes).
pub(crate) fn held_span(c: &Conn) -> Option<(Ts, Option<Ts>)> {
    let f = &c.facts;
    let established = match (f.synack.get(), f.handshake_ack.get(), f.orig_data.get()) {
        // A reset answering the SYN-ACK leaves a half-open socket the kernel drops itself.
        (Some(_), None, None) if f.orig_rst.is_some() => return None,
        (Some(t), _, _) => t,
        (None, _, _) if f.syn.is_none() => c.first_ts,
        _ => return None,
    };
    let release = [f.orig_rst, f.resp_rst, f.resp_fin].into_iter().flatten().min();
    Some((established, release))
}

/// The client reset a connection the server's kernel had accepted (the handshake completed: a bare
/// ACK or data after the SYN-ACK) while the server still had it open (no FIN or reset from it
/// before). A half-open reset (`S h R`) is not one: the kernel drops that socket itself.
pub(crate) fn reset_after_accept(c: &Conn) -> bool {
    let f = &c.facts;
    let Some(rst) = f.orig_rst.get() else { return false };
    let established = f.synack.is_some() && (f.handshake_ack.is_some() || f.orig_data.is_some());
    let server_closed_first = [f.resp_fin, f.resp_rst].into_iter().flatten().any(|t| t < rst);
    established && !server_closed_first
}

/// CLOSE_WAIT on the server, seen from the wire: from the server's ACK of the client's FIN until
/// the server closes (or a reset ends the socket). `None` end means still abandoned.
pub fn close_wait_span(c: &Conn) -> Option<(Ts, Option<Ts>)> {
    let f = &c.facts;
    let since = f.resp_acked_orig_fin.get()?;
    // A server that had already closed (FIN or RST first) is not in CLOSE_WAIT.
    if [f.resp_fin, f.resp_rst].into_iter().flatten().any(|t| t < since) {
        return None;
    }
    let end = [f.resp_fin, f.resp_rst, f.orig_rst].into_iter().flatten().filter(|t| *t >= since).min();
    Some((since, end))
}

impl Backends {
    pub fn new() -> Self {
        Backends { timeline: None, map: FxHashMap::default(), overflow: 0, group_budget: MAX_GROUPS_TOTAL }
    }

    fn all_series_mut(&mut self) -> impl Iterator<Item = &mut Sparse> {
        self.map
            .values_mut()
            .flat_map(|b| std::iter::once(&mut b.synacked).chain(b.groups.iter_mut().flat_map(|g| g.series_mut())))
    }

    /// Grows the timeline backwards or coarsens it so that `t` has a bucket. Coarsening comes first,
    /// so however far apart the instants are, the series never exceed [`MAX_BUCKETS`].
    fn cover(&mut self, t: Ts) {
        // Already covered, with room to spare: nothing below would change (the common case).
        if let Some(tl) = self.timeline {
            if tl.buckets + 64 < MAX_BUCKETS && tl.index(t).is_some_and(|i| i < tl.buckets) {
                return;
            }
        }
        let mut tl = *self.timeline.get_or_insert(Timeline { origin: t, width: START_WIDTH, buckets: 1 });
        loop {
            let w = i128::from(tl.width);
            let lo = i128::from(tl.origin.min(t));
            let hi = (i128::from(tl.origin) + tl.buckets as i128 * w).max(i128::from(t) + 1);
            // 64 spare buckets: a backwards shift rounds up to whole chunks.
            if (hi - lo) / w + 64 < MAX_BUCKETS as i128 {
                break;
            }
            for s in self.all_series_mut() {
                s.coarsen();
            }
            tl.width = tl.width.saturating_mul(2);
            tl.buckets = tl.buckets.div_ceil(2);
        }
        let w = i128::from(tl.width);
        if t < tl.origin {
            // Shift everything right by whole chunks so early arrivals stay exact.
            let need = ((i128::from(tl.origin) - i128::from(t)) / w + 1) as usize;
            let k = need.div_ceil(64) * 64;
            for s in self.all_series_mut() {
                s.shift(k);
            }
            tl.origin = (i128::from(tl.origin) - k as i128 * w).max(i128::from(Ts::MIN)) as Ts;
            tl.buckets += k;
        }
        let idx = ((i128::from(t) - i128::from(tl.origin)) / w) as usize;
        tl.buckets = tl.buckets.max(idx + 1);
        self.timeline = Some(tl);
    }

    /// Aggregates one finished connection.
    pub fn add(&mut self, c: &Conn) {
        let key = (c.resp_h, c.resp_p);
        if !self.map.contains_key(&key) && self.map.len() >= MAX_BACKENDS {
            self.overflow += 1;
            return;
        }
        let tr = classify::traits(c);
        let ev_t = event_ts(c);
        let span_t = held_span(c);
        let cw_t = close_wait_span(c);
        let f = &c.facts;
        // Make the timeline cover the earliest and latest instants first; then index them all.
        let times = [
            Some(ev_t),
            span_t.map(|s| s.0),
            span_t.and_then(|s| s.1),
            cw_t.map(|s| s.0),
            cw_t.and_then(|s| s.1),
            Some(c.first_ts),
            f.synack.get(),
        ];
        let lo = times.iter().flatten().min().copied().unwrap_or(ev_t);
        let hi = times.iter().flatten().max().copied().unwrap_or(ev_t);
        self.cover(lo);
        self.cover(hi);
        let tl = self.timeline.expect("cover() sets the timeline");
        let at = |t: Ts| tl.index(t).unwrap_or(0);
        let ev = at(ev_t);
        let span = span_t.map(|(s, e)| (at(s), e.map(at)));
        let abandoned = cw_t.map(|(s, e)| (at(s), e.map(at)));

        let b = self.map.entry(key).or_insert_with(|| Backend::new(c.resp_h, c.resp_p, c.first_ts));
        b.conns += 1;
        b.first = b.first.min(c.first_ts);
        b.last = b.last.max(c.last_ts);
        if f.synack_count > 1 {
            b.synack_retransmits += 1;
        }
        if let Some(t) = f.synack.get() {
            b.synacked.add(at(t), 1);
        }
        b.app_spoke |= f.resp_data.is_some() || f.resp_fin.is_some();
        if f.server != 0 {
            b.server = f.server;
        }
        match tr.shape {
            Shape::Unanswered => b.failed.push(c.first_ts),
            Shape::Refused => b.refused.push(c.first_ts),
            _ => {}
        }

        let gi = b.group_for(&tr, c.orig_h, &mut self.group_budget, c);
        let g = &mut b.groups[gi];
        g.votes.count += 1;
        g.votes.bare_ack_first += u64::from(tr.bare_ack_first);
        g.votes.agent_probe += u64::from(tr.agent == Agent::Probe);
        g.votes.agent_other += u64::from(tr.agent == Agent::Other);
        let e = g.ending_mut(tr.ending);
        e.count += 1;
        e.events.add(ev, 1);
        e.resets_after_accept += u64::from(reset_after_accept(c));
        if let Some((s, end)) = abandoned {
            e.abandoned.add(s, 1);
            match end {
                Some(x) => e.abandoned.add(x, -1),
                None => e.close_wait_now += 1,
            }
        }
        g.starts.push(c.first_ts);
        g.first = g.first.min(c.first_ts);
        g.last = g.last.max(c.first_ts);
        if f.synack.is_some() {
            g.last_synack = Some(g.last_synack.map_or(c.first_ts, |t| t.max(c.first_ts)));
            if f.orig_data.is_some() {
                if f.resp_data.is_some() {
                    g.answered += 1;
                    g.last_response = Some(g.last_response.map_or(c.first_ts, |t| t.max(c.first_ts)));
                } else {
                    g.stalled.push(c.first_ts);
                    g.stalled_total += 1;
                }
            }
        }
        if let Some((s, end)) = span {
            g.held.add(s, 1);
            match end {
                Some(x) => g.held.add(x, -1),
                None => g.held_now += 1,
            }
        }
        if let Some(code) = http::status_code(c.response()) {
            match g.statuses.iter_mut().find(|(s, _)| *s == code) {
                Some((_, n)) => *n += 1,
                None => g.statuses.push((code, 1)),
            }
        }
        if let (Some(q), Some(r)) = (f.orig_data.get(), f.resp_data.get()) {
            g.response_time_sum_s += crate::decode::secs(q, r);
            g.response_time_n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_series_coarsen_and_shift_keep_totals() {
        let mut s = Sparse::default();
        for (i, v) in [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)] {
            s.add(i, v);
        }
        s.add(2, 10); // out of order: a connection that ended earlier than the last one added
        s.coarsen();
        assert_eq!(s.0, vec![(0, 3), (1, 17), (2, 5)]);
        assert_eq!(s.0.iter().map(|p| p.1).sum::<i32>(), 25);
        s.shift(2);
        let mut d = Series::default();
        s.add_into(&mut d);
        assert_eq!(d.0, vec![0, 0, 3, 17, 5]);
    }

    #[test]
    fn far_apart_instants_stay_within_the_bucket_cap() {
        // Regression (fuzzing): a connection decades before the first one used to allocate a
        // bucket per 50 ms of the gap.
        let mut b = Backends::new();
        for t in [1_700_000_000 * 1_000_000_000, 5, 4_000_000_000 * 1_000_000_000, 1_000_000_000] {
            b.cover(t);
            let tl = b.timeline.unwrap();
            assert!(tl.buckets <= MAX_BUCKETS, "{tl:?}");
            assert!(tl.index(t).unwrap() < tl.buckets);
        }
    }

    #[test]
    fn ring_keeps_the_latest() {
        let mut r = Ring::default();
        for t in 0..(RING as Ts + 10) {
            r.push(t);
        }
        let v = r.sorted();
        assert_eq!(v.len(), RING);
        assert_eq!(v[0], 10);
    }
}
