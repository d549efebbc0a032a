//! Classify: names what each finished connection was — a health-check probe of some kind, or
//! ordinary traffic and how it ended — and tells probers apart by their steady rhythm.
//!
//! Two steps. [`shape`] looks at one connection's packets only (who sent what, who closed first).
//! Shapes without a request (half-open RST, handshake then RST, connect then FIN) are probes by
//! themselves: no user opens a connection to say nothing. SYNs refused or never answered are a
//! prober's only from a source that probes the backend or on a prober's rhythm ([`decide_failed`]).
//! Shapes that carry a request (data then RST, HTTP) could be either; [`decide`] settles those per group of
//! connections — same source, same backend, same request — using what probers share: a steady
//! interval, no bare ACK before the request (HAProxy's checks), no browser User-Agent.

use crate::flow::Conn;
use crate::http;
use std::hash::{Hash, Hasher};

/// The connection kinds reported per backend; probe kinds first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `S h R`: HAProxy's plain `check` on Linux. Never reaches accept() there.
    HalfOpenRst,
    /// `S h A R`: handshake completed, nothing sent, reset (tcp-check connect + expect, agent-check).
    HandshakeRst,
    /// `S h D R`: a payload (tcp-check send, PROXY header) then a reset.
    DataRst,
    /// An HTTP request and its answer (option httpchk, kubelet httpGet, …).
    HttpCheck,
    /// `S h A F`: connect then close with FIN (scripts, keepalived-style checks).
    ConnectFin,
    /// `S r`: nothing listening.
    Refused,
    /// `S` alone: SYNs nobody answered.
    Unanswered,
    /// Ordinary traffic, by how it ended.
    Traffic(Ending),
}

/// How an ordinary connection ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ending {
    /// The client (load balancer) reset it — HAProxy does this to keep-alive server connections.
    #[default]
    Rst,
    /// Closed with FINs.
    Fin,
    /// The server reset it.
    ServerRst,
    /// A request that never got a response byte.
    Stalled,
    /// Still open when the capture ended.
    Open,
    /// A SYN nobody answered.
    Unanswered,
    /// A SYN answered by a reset.
    Refused,
}

impl Ending {
    pub(crate) const ALL: [Ending; 7] = [
        Ending::Rst,
        Ending::Fin,
        Ending::ServerRst,
        Ending::Stalled,
        Ending::Open,
        Ending::Unanswered,
        Ending::Refused,
    ];
}

impl Kind {
    pub(crate) fn is_probe(self) -> bool {
        !matches!(self, Kind::Traffic(_))
    }

    /// Stable names used in JSON, TSV and evidence.
    pub fn name(self) -> &'static str {
        match self {
            Kind::HalfOpenRst => "halfopen_rst",
            Kind::HandshakeRst => "handshake_rst",
            Kind::DataRst => "data_rst",
            Kind::HttpCheck => "http_check",
            Kind::ConnectFin => "connect_fin",
            Kind::Refused => "refused",
            Kind::Unanswered => "unanswered",
            Kind::Traffic(Ending::Rst) => "traffic_rst",
            Kind::Traffic(Ending::Fin) => "traffic_fin",
            Kind::Traffic(Ending::ServerRst) => "traffic_server_rst",
            Kind::Traffic(Ending::Stalled) => "traffic_stalled",
            Kind::Traffic(Ending::Open) => "traffic_open",
            Kind::Traffic(Ending::Unanswered) => "traffic_unanswered",
            Kind::Traffic(Ending::Refused) => "traffic_refused",
        }
    }
}

/// What one connection looks like from its packets alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Shape {
    HalfOpenRst,
    HandshakeRst,
    ConnectFin,
    Refused,
    Unanswered,
    /// A payload that is not HTTP (`tcp-check send PING`, a PROXY header, TLS, a protocol's own
    /// hello): a probe if its group says so, whatever the server answered and however it ended.
    Data,
    /// An HTTP request: a check or traffic, by its group.
    Http,
    /// Anything else: ordinary traffic.
    Other,
}

impl Shape {
    /// Shapes that are probes whatever their group looks like: no user opens a connection to say
    /// nothing. (Failed SYNs are not among them: [`decide_failed`] settles those per group.)
    pub(crate) fn probe_kind(self) -> Option<Kind> {
        Some(match self {
            Shape::HalfOpenRst => Kind::HalfOpenRst,
            Shape::HandshakeRst => Kind::HandshakeRst,
            Shape::ConnectFin => Kind::ConnectFin,
            Shape::Refused | Shape::Unanswered | Shape::Data | Shape::Http | Shape::Other => return None,
        })
    }
}

/// What the first request said about its sender.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Agent {
    /// No User-Agent (or no request).
    #[default]
    None,
    /// A health checker's or uptime monitor's User-Agent.
    Probe,
    /// Anything else: a browser, a library, a user's tool.
    Other,
}

/// Whose User-Agent the first request carried: a User-Agent naming one of
/// [`http::PROBE_AGENTS`] is a prober's.
pub(crate) fn agent(c: &Conn) -> Agent {
    match c.facts.user_agent {
        0 => Agent::None,
        http::AGENT_UNLISTED => Agent::Other,
        _ => Agent::Probe,
    }
}

/// Per-connection classification input: shape, ending and the traits groups vote with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Traits<'a> {
    pub(crate) shape: Shape,
    pub(crate) ending: Ending,
    /// The client sent a bare ACK before its first payload (HAProxy traffic does, its checks don't).
    pub(crate) bare_ack_first: bool,
    pub(crate) agent: Agent,
    /// Hash of the HTTP method and path, or of a non-HTTP payload's first bytes (0 when nothing
    /// was sent), to group identical checks.
    pub(crate) signature: u64,
    /// The HTTP request line (method, path) the shape was recognised by, for the group's label.
    pub(crate) request: Option<(&'a str, &'a str)>,
}

/// How the connection ended, for ordinary traffic. A FIN from the server means its application
/// closed the socket, whatever the client did; only a reset the server never answered with its own
/// close counts as `Rst`.
pub(crate) fn ending(c: &Conn) -> Ending {
    let f = &c.facts;
    if f.syn.is_some() && f.synack.is_none() && f.orig_data.is_none() {
        return if f.resp_rst.is_some() { Ending::Refused } else { Ending::Unanswered };
    }
    if f.orig_data.is_some() && f.resp_data.is_none() {
        Ending::Stalled
    } else if f.resp_fin.is_some() {
        Ending::Fin
    } else if f.orig_rst.is_some() {
        Ending::Rst
    } else if f.resp_rst.is_some() {
        Ending::ServerRst
    } else if f.orig_fin.is_some() {
        Ending::Fin
    } else {
        Ending::Open
    }
}

/// The packet-only view of one connection.
pub(crate) fn shape(c: &Conn) -> Shape {
    shape_and_request(c).0
}

/// The shape, and for HTTP the request line it was recognised by (parsed once).
pub(crate) fn shape_and_request(c: &Conn) -> (Shape, Option<(&str, &str)>) {
    let f = &c.facts;
    if f.syn.is_none() && f.synack.is_none() {
        return (Shape::Other, None); // seen mid-stream: its beginning is unknown
    }
    if f.synack.is_none() {
        if f.resp_rst.is_some() && f.orig_data.is_none() {
            return (Shape::Refused, None);
        }
        if c.resp.pkts == 0 || f.orig_data.is_none() {
            return (Shape::Unanswered, None);
        }
        return (Shape::Other, None);
    }
    if f.orig_data.is_none() {
        let orig_close = [f.orig_rst, f.orig_fin].into_iter().flatten().min();
        // Nothing was asked: a probe, named after how the prober closed — even when the server
        // closed first (it restarted, or timed the idle connection out).
        let s = match orig_close {
            Some(_) if f.orig_rst.is_some_and(|r| f.orig_fin.is_none_or(|fin| r <= fin)) => {
                if f.handshake_ack.is_some() {
                    Shape::HandshakeRst
                } else {
                    Shape::HalfOpenRst
                }
            }
            Some(_) => Shape::ConnectFin,
            None => Shape::Other,
        };
        return (s, None);
    }
    if let Some(line) = http::request_line(c.request()) {
        return (Shape::Http, Some(line));
    }
    (Shape::Data, None)
}

/// Bytes of a non-HTTP payload that name a check: `PING\r\n`, `PROXY `, a TLS record header.
const DATA_SIGNATURE_BYTES: usize = 6;

/// Everything the grouping needs from one connection.
pub(crate) fn traits(c: &Conn) -> Traits<'_> {
    let (shape, line) = shape_and_request(c);
    let signature = match line {
        Some((m, p)) => {
            let mut h = rustc_hash::FxHasher::default();
            m.hash(&mut h);
            p.hash(&mut h);
            h.finish() | 1
        }
        None if shape == Shape::Data => {
            let req = c.request();
            let mut h = rustc_hash::FxHasher::default();
            req[..req.len().min(DATA_SIGNATURE_BYTES)].hash(&mut h);
            h.finish() | 1
        }
        None => 0,
    };
    let f = &c.facts;
    Traits {
        shape,
        ending: ending(c),
        bare_ack_first: f.handshake_ack.is_some() && f.orig_data.is_some(),
        agent: agent(c),
        request: line,
        signature,
    }
}

/// A per-connection label for `--flows`: the probe kind when the shape alone says so, `http` or
/// `data_rst` when the group decides (see the report), else `traffic_<ending>`.
pub fn flow_label(c: &Conn) -> &'static str {
    let s = shape(c);
    match s {
        Shape::Data if c.facts.resp_data.is_none() && c.facts.orig_rst.is_some() => "data_rst",
        Shape::Data => Kind::Traffic(ending(c)).name(),
        Shape::Http => "http",
        Shape::Other => Kind::Traffic(ending(c)).name(),
        // Whether a failed SYN was a prober's is the group's question; the connection is named
        // after what happened to it.
        Shape::Unanswered => "unanswered",
        Shape::Refused => "refused",
        Shape::HalfOpenRst | Shape::HandshakeRst | Shape::ConnectFin => s.probe_kind().map_or("traffic", Kind::name),
    }
}

/// Statistics of a group of connections that settle probe-or-traffic for request-carrying shapes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct GroupVotes {
    pub(crate) count: u64,
    pub(crate) bare_ack_first: u64,
    pub(crate) agent_probe: u64,
    pub(crate) agent_other: u64,
}

/// The shortest interval a prober keeps.
pub(crate) const STEADY_MIN_INTERVAL_S: f64 = 0.05;
/// A rhythm needs this many intervals before it can be called steady.
pub(crate) const STEADY_MIN_INTERVALS: usize = 4;
/// Spread allowed against the interval (robust spread / median).
pub(crate) const STEADY_REL_JITTER: f64 = 0.25;
/// Spread allowed on top, in seconds: a loop's own scheduling noise (at most as much again as the
/// relative allowance, so that bursts milliseconds apart never look steady).
pub(crate) const STEADY_ABS_JITTER_S: f64 = 0.02;

/// Intervals between a group's connections: median and robust spread (1.4826 × MAD), seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rhythm {
    pub(crate) median_s: f64,
    pub(crate) jitter_s: f64,
    pub(crate) intervals: usize,
}

impl Rhythm {
    /// Steady enough to be a prober: enough repeats, spread small against the interval. Probe
    /// loops that visit several targets in turn wobble by tens of milliseconds whatever their
    /// interval, hence the absolute allowance on top of the relative one. Nothing probes faster
    /// than every 50 ms; a burst of connections a millisecond apart is a client.
    pub(crate) fn is_steady(&self) -> bool {
        self.intervals >= STEADY_MIN_INTERVALS
            && self.median_s >= STEADY_MIN_INTERVAL_S
            && self.jitter_s
                <= STEADY_REL_JITTER * self.median_s + STEADY_ABS_JITTER_S.min(STEADY_REL_JITTER * self.median_s)
    }
}

/// The rhythm of sorted start times.
pub(crate) fn rhythm(starts_ns: &[i64]) -> Option<Rhythm> {
    if starts_ns.len() < 2 {
        return None;
    }
    let mut iv: Vec<f64> = starts_ns.windows(2).map(|w| crate::decode::secs(w[0], w[1])).collect();
    let med = median(&mut iv);
    let mut dev: Vec<f64> = iv.iter().map(|x| (x - med).abs()).collect();
    let mad = median(&mut dev);
    Some(Rhythm { median_s: med, jitter_s: 1.4826 * mad, intervals: iv.len() })
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Settles the kind of a group of SYNs that got no answer or a reset (same source and backend):
/// probes when they keep a prober's rhythm or come from a source that probes this backend in other
/// ways too (a prober whose checks now fail); else clients' connection attempts.
pub(crate) fn decide_failed(shape: Shape, rhythm: Option<Rhythm>, prober_source: bool) -> Kind {
    let probe = prober_source || rhythm.is_some_and(|r| r.is_steady());
    match shape {
        Shape::Refused if probe => Kind::Refused,
        Shape::Refused => Kind::Traffic(Ending::Refused),
        _ if probe => Kind::Unanswered,
        _ => Kind::Traffic(Ending::Unanswered),
    }
}

/// Settles the kind of a group of request-carrying connections (same source, backend, request).
/// A check still waiting for its end when the capture stopped is not counted as a probe: its
/// outcome is not known (and probers count only the checks they finished).
pub(crate) fn decide(shape: Shape, ending: Ending, votes: &GroupVotes, rhythm: Option<Rhythm>) -> Kind {
    if let Some(k) = shape.probe_kind() {
        return k;
    }
    if matches!(shape, Shape::Unanswered | Shape::Refused) {
        return decide_failed(shape, rhythm, false);
    }
    if ending == Ending::Open {
        return Kind::Traffic(Ending::Open);
    }
    let steady = rhythm.is_some_and(|r| r.is_steady());
    let mostly = |n: u64| n * 2 > votes.count;
    let probe = match shape {
        Shape::Http => {
            mostly(votes.agent_probe)
                || (steady && !mostly(votes.agent_other))
                || (!mostly(votes.bare_ack_first) && !mostly(votes.agent_other) && votes.count >= 3)
        }
        Shape::Data => steady || (!mostly(votes.bare_ack_first) && votes.count >= 3),
        _ => false,
    };
    match shape {
        _ if !probe => Kind::Traffic(ending),
        Shape::Http => Kind::HttpCheck,
        _ => Kind::DataRst,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rhythm_of_a_steady_prober() {
        let starts: Vec<i64> = (0..20).map(|i| i * 200_000_000 + (i % 3) * 1_000_000).collect();
        let r = rhythm(&starts).unwrap();
        assert!((r.median_s - 0.2).abs() < 0.002, "{r:?}");
        assert!(r.is_steady());
        let bursty: Vec<i64> = [0, 10, 20, 900, 905, 2000, 2001, 5000].iter().map(|ms| ms * 1_000_000).collect();
        assert!(!rhythm(&bursty).unwrap().is_steady());
    }

    #[test]
    fn request_groups_are_settled_by_votes() {
        let haproxy_check = GroupVotes { count: 50, bare_ack_first: 0, agent_probe: 0, agent_other: 0 };
        let steady = Some(Rhythm { median_s: 0.2, jitter_s: 0.001, intervals: 49 });
        assert_eq!(decide(Shape::Http, Ending::Fin, &haproxy_check, steady), Kind::HttpCheck);
        let browsers = GroupVotes { count: 50, bare_ack_first: 50, agent_probe: 0, agent_other: 50 };
        assert_eq!(decide(Shape::Http, Ending::Rst, &browsers, steady), Kind::Traffic(Ending::Rst));
        let kubelet = GroupVotes { count: 10, bare_ack_first: 10, agent_probe: 10, agent_other: 0 };
        assert_eq!(decide(Shape::Http, Ending::Fin, &kubelet, None), Kind::HttpCheck);
        let haproxy_traffic = GroupVotes { count: 40, bare_ack_first: 40, agent_probe: 0, agent_other: 0 };
        assert_eq!(decide(Shape::Http, Ending::Rst, &haproxy_traffic, None), Kind::Traffic(Ending::Rst));
        assert_eq!(decide(Shape::HalfOpenRst, Ending::Rst, &browsers, None), Kind::HalfOpenRst);
    }

    #[test]
    fn data_groups_are_probes_by_rhythm_or_by_the_missing_bare_ack() {
        let steady = Some(Rhythm { median_s: 2.0, jitter_s: 0.01, intervals: 20 });
        let bursty = Some(Rhythm { median_s: 2.0, jitter_s: 1.5, intervals: 20 });
        let clients = GroupVotes { count: 20, bare_ack_first: 20, agent_probe: 0, agent_other: 0 };
        let checks = GroupVotes { count: 3, bare_ack_first: 0, agent_probe: 0, agent_other: 0 };
        // A client protocol's hello (bare ACK first, irregular): traffic, by how it ended.
        assert_eq!(decide(Shape::Data, Ending::Fin, &clients, bursty), Kind::Traffic(Ending::Fin));
        // The same group on a steady rhythm: a prober's payload, whatever the server answered.
        assert_eq!(decide(Shape::Data, Ending::Fin, &clients, steady), Kind::DataRst);
        // No bare ACK before the payload (HAProxy's tcp-check send): a probe from three on.
        assert_eq!(decide(Shape::Data, Ending::Stalled, &checks, bursty), Kind::DataRst);
        let two = GroupVotes { count: 2, ..checks };
        assert_eq!(decide(Shape::Data, Ending::Stalled, &two, None), Kind::Traffic(Ending::Stalled));
        // HTTP: a browser User-Agent keeps a steady group traffic; a checker's makes any a probe.
        let browsers = GroupVotes { count: 20, bare_ack_first: 20, agent_probe: 0, agent_other: 20 };
        assert_eq!(decide(Shape::Http, Ending::Fin, &browsers, steady), Kind::Traffic(Ending::Fin));
        let blackbox = GroupVotes { count: 20, bare_ack_first: 20, agent_probe: 20, agent_other: 0 };
        assert_eq!(decide(Shape::Http, Ending::Fin, &blackbox, bursty), Kind::HttpCheck);
        // No User-Agent at all (Varnish): the rhythm decides.
        let varnish = GroupVotes { count: 20, bare_ack_first: 20, agent_probe: 0, agent_other: 0 };
        assert_eq!(decide(Shape::Http, Ending::Fin, &varnish, steady), Kind::HttpCheck);
        assert_eq!(decide(Shape::Http, Ending::Fin, &varnish, bursty), Kind::Traffic(Ending::Fin));
    }

    #[test]
    fn steadiness_allows_a_loops_jitter_but_not_bursts() {
        let r = |median_s: f64, jitter_s: f64, intervals: usize| Rhythm { median_s, jitter_s, intervals };
        // Relative: a quarter of the interval.
        assert!(r(10.0, 2.5, 10).is_steady());
        assert!(!r(10.0, 2.6 + STEADY_ABS_JITTER_S, 10).is_steady());
        // Absolute: tens of milliseconds on a 100 ms loop …
        assert!(r(0.1, 0.045, 10).is_steady());
        assert!(!r(0.1, 0.046, 10).is_steady());
        // … but never more than the relative allowance again …
        assert!(r(0.06, 0.03, 10).is_steady());
        assert!(!r(0.06, 0.031, 10).is_steady());
        // … and nothing faster than every 50 ms: a burst a millisecond apart is a client.
        assert!(r(0.05, 0.0, 10).is_steady());
        assert!(!r(0.049, 0.0, 10).is_steady());
        // Enough repeats.
        assert!(!r(1.0, 0.0, STEADY_MIN_INTERVALS - 1).is_steady());
        assert!(r(1.0, 0.0, STEADY_MIN_INTERVALS).is_steady());
    }

    use crate::testkit::{conn, Script};

    #[test]
    fn a_syn_never_answered_is_unanswered_and_one_reset_is_refused() {
        let c = conn(Script::new(40001, 0).c("S", b"").wait(1000));
        assert_eq!((shape(&c), ending(&c)), (Shape::Unanswered, Ending::Unanswered));
        let c = conn(Script::new(40002, 0).c("S", b"").s("RA", b""));
        assert_eq!((shape(&c), ending(&c)), (Shape::Refused, Ending::Refused));
    }

    #[test]
    fn a_lost_syn_ack_is_unanswered_only_while_the_server_says_nothing() {
        // The SYN-ACK never reached the capture point, and the client went on and sent its
        // request: as long as the server says nothing either, it is an unanswered connection …
        let c = conn(Script::new(40003, 0).c("S", b"").s_lost("SA").c("A", b"").c("PA", b"GET / HTTP/1.1\r\n\r\n"));
        assert_eq!(shape(&c), Shape::Unanswered);
        // Its payload does not split the source's unanswered connections into groups.
        assert_eq!(traits(&c).signature, 0);
        // … but once the server answers, it is traffic whose beginning is not known.
        let c = conn(
            Script::new(40004, 0)
                .c("S", b"")
                .s_lost("SA")
                .c("A", b"")
                .c("PA", b"GET / HTTP/1.1\r\n\r\n")
                .s("PA", b"HTTP/1.1 200 OK\r\n\r\n"),
        );
        assert_eq!(shape(&c), Shape::Other);
    }

    #[test]
    fn the_clients_first_close_names_a_probe_without_request() {
        let hs = |port| Script::new(port, 0).c("S", b"").s("SA", b"").c("A", b"");
        // A reset first: handshake-then-RST, also when a FIN follows.
        assert_eq!(shape(&conn(hs(40005).c("RA", b""))), Shape::HandshakeRst);
        // A FIN first: connect-then-FIN, also when the client resets after the server's FIN.
        let c = conn(hs(40006).c("FA", b"").s("FA", b"").c("RA", b""));
        assert_eq!(shape(&c), Shape::ConnectFin);
        assert_eq!(flow_label(&c), "connect_fin");
        // Nothing sent, nothing to tell groups apart by: one group per source and shape.
        assert_eq!(traits(&conn(hs(40011).c("RA", b""))).signature, 0);
        // No bare ACK: half-open.
        assert_eq!(shape(&conn(Script::new(40007, 0).c("S", b"").s("SA", b"").c("R", b""))), Shape::HalfOpenRst);
    }

    #[test]
    fn a_connection_that_said_nothing_ends_as_its_close_says() {
        let hs = |port| Script::new(port, 0).c("S", b"").s("SA", b"").c("A", b"");
        assert_eq!(ending(&conn(hs(40008).c("RA", b""))), Ending::Rst);
        assert_eq!(ending(&conn(hs(40009).c("FA", b"").s("FA", b"").c("A", b""))), Ending::Fin);
        // A request never answered: stalled, however it was closed.
        let c = conn(hs(40010).c("PA", b"PING\r\n").c("RA", b""));
        assert_eq!((shape(&c), ending(&c)), (Shape::Data, Ending::Stalled));
    }

    #[test]
    fn every_shape_has_its_flow_label() {
        let hs = |port| Script::new(port, 0).c("S", b"").s("SA", b"").c("A", b"");
        let label = |s: Script| flow_label(&conn(s));
        assert_eq!(label(Script::new(40020, 0).c("S", b"")), "unanswered");
        assert_eq!(label(Script::new(40021, 0).c("S", b"").s("RA", b"")), "refused");
        assert_eq!(label(Script::new(40022, 0).c("S", b"").s("SA", b"").c("R", b"")), "halfopen_rst");
        assert_eq!(label(hs(40023).c("RA", b"")), "handshake_rst");
        // A payload the server never answered, then a reset: HAProxy's tcp-check send.
        assert_eq!(label(hs(40024).c("PA", b"PING\r\n").c("RA", b"")), "data_rst");
        // Answered, or closed without a reset: traffic, by how it ended.
        let answered = hs(40025).c("PA", b"PING\r\n").s("PA", b"+PONG\r\n").c("RA", b"");
        assert_eq!(label(answered), "traffic_rst");
        assert_eq!(label(hs(40026).c("PA", b"PING\r\n").c("FA", b"")), "traffic_stalled");
        assert_eq!(label(hs(40027).c("PA", b"GET / HTTP/1.1\r\n\r\n").c("RA", b"")), "http");
        // Seen mid-stream: no beginning, traffic.
        let mid = Script::new(40028, 0).c("PA", b"more").s("PA", b"ok").s("FA", b"").c("FA", b"");
        assert_eq!(label(mid), "traffic_fin");
    }

    #[test]
    fn signatures_tell_requests_apart_and_bare_acks_are_seen() {
        let hs = |port| Script::new(port, 0).c("S", b"").s("SA", b"").c("A", b"");
        let sig = |s: Script| traits(&conn(s)).signature;
        let (a, b) =
            (sig(hs(40030).c("PA", b"GET /a HTTP/1.1\r\n\r\n")), sig(hs(40031).c("PA", b"GET /b HTTP/1.1\r\n\r\n")));
        assert!(a != b && a != 0 && b != 0, "{a} {b}");
        assert_eq!(
            a,
            sig(hs(40032).c("PA", b"GET /a HTTP/1.1\r\nUser-Agent: x\r\n\r\n")),
            "the request line, not the headers"
        );
        // Non-HTTP payloads: by their first six bytes.
        let (p, q) = (sig(hs(40033).c("PA", b"PING\r\n")), sig(hs(40034).c("PA", b"QUIT\r\n")));
        assert!(p != q && p != 0 && q != 0, "{p} {q}");
        assert_eq!(p, sig(hs(40035).c("PA", b"PING\r\nmore")));
        // HAProxy's checks send their payload with the handshake's last ACK; clients send a bare ACK first.
        let check = Script::new(40036, 0).c("S", b"").s("SA", b"").c("PA", b"PING\r\n");
        assert!(!traits(&conn(check)).bare_ack_first);
        assert!(traits(&conn(hs(40037).c("PA", b"PING\r\n"))).bare_ack_first);
        // No payload: no bare ACK "before" it.
        assert!(!traits(&conn(hs(40038).c("RA", b""))).bare_ack_first);
    }

    #[test]
    fn rhythm_and_median_at_their_edges() {
        assert!(rhythm(&[]).is_none() && rhythm(&[5]).is_none(), "one start has no interval");
        let r = rhythm(&[0, 2_000_000_000]).unwrap();
        assert_eq!((r.median_s, r.jitter_s, r.intervals), (2.0, 0.0, 1));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn failed_syns_are_probes_from_a_prober_or_on_a_rhythm() {
        let steady = Some(Rhythm { median_s: 5.0, jitter_s: 0.01, intervals: 10 });
        assert_eq!(decide_failed(Shape::Refused, None, true), Kind::Refused);
        assert_eq!(decide_failed(Shape::Refused, steady, false), Kind::Refused);
        assert_eq!(decide_failed(Shape::Refused, None, false), Kind::Traffic(Ending::Refused));
        assert_eq!(decide_failed(Shape::Unanswered, None, true), Kind::Unanswered);
        assert_eq!(decide_failed(Shape::Unanswered, None, false), Kind::Traffic(Ending::Unanswered));
    }

    #[test]
    fn half_is_not_most_and_checks_need_no_rhythm() {
        // HAProxy's httpchk: no bare ACK, no User-Agent, three or more — a check even off rhythm.
        let haproxy = GroupVotes { count: 3, bare_ack_first: 0, agent_probe: 0, agent_other: 0 };
        assert_eq!(decide(Shape::Http, Ending::Fin, &haproxy, None), Kind::HttpCheck);
        // Exactly half of them with a checker's User-Agent is not "mostly".
        let half = GroupVotes { count: 20, bare_ack_first: 20, agent_probe: 10, agent_other: 0 };
        assert_eq!(decide(Shape::Http, Ending::Fin, &half, None), Kind::Traffic(Ending::Fin));
        let most = GroupVotes { agent_probe: 11, ..half };
        assert_eq!(decide(Shape::Http, Ending::Fin, &most, None), Kind::HttpCheck);
    }
}
