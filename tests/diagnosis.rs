//! The diagnosis on real recordings (fixtures/diag, made by fixtures/record/record-all.sh with real
//! HAProxy 2.6 and small servers on loopback). Each recording has a truth file written from the
//! servers' own logs and an independent tcpdump count; the verdicts, drivers, sockets per driver
//! event (±10%), probe counts (exact) and prober intervals (±5%) must agree with it.

use hcleak::backend::Backends;
use hcleak::explain;
use hcleak::flow::FlowConfig;
use hcleak::pipeline::read_flows;
use hcleak::sockets::read_csv;
use hcleak::verdict::{judge, BackendReport, Finding, Options, Remedy, Report, SocketsSource, Verdict};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn diag(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/diag").join(name)
}

fn report(scenario: &str, with_samples: bool) -> Report {
    let (conns, _, errors) = read_flows(&[diag(&format!("{scenario}.pcap"))], None, FlowConfig::default()).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let mut b = Backends::new();
    for c in &conns {
        b.add(c);
    }
    let host = with_samples.then(|| read_csv(&diag(&format!("{scenario}.sockets.csv"))).unwrap());
    judge(&b, host.as_ref(), &Options { limit: None, min_conns: 3 })
}

fn backend<'a>(r: &'a Report, name: &str) -> &'a BackendReport {
    r.backends.iter().find(|b| b.name() == name).unwrap_or_else(|| panic!("no backend {name} in {r:#?}"))
}

fn truth(scenario: &str) -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(diag(&format!("{scenario}.truth.json"))).unwrap();
    serde_json::from_str::<Value>(&text).unwrap().as_object().unwrap().clone()
}

const SCENARIOS: [&str; 9] = [
    "reset-leak",
    "plain-check",
    "mixed-agent",
    "httpchk-keepalive",
    "close-wait",
    "traffic-rst",
    "stop-accepting",
    "fd-exhaustion",
    "restart",
];

/// Every backend of every recording, judged with its host samples, against the truth.
#[test]
fn host_samples_verdicts_match_the_truth() {
    let mut checked = 0;
    for scenario in SCENARIOS {
        let r = report(scenario, true);
        for (name, t) in truth(scenario) {
            let b = backend(&r, &name);
            let ctx = format!("{scenario} {name}: {b:#?}");
            assert_eq!(b.sockets_source, SocketsSource::Host, "{ctx}");
            // An exhausted backend (stopped answering) is reported as a leak with when it stopped.
            let want = match t["expected_verdict"].as_str().unwrap() {
                "ok" => Verdict::Ok,
                "leak" => Verdict::Leak,
                "exhausted" => {
                    assert!(b.stopped.is_some(), "{ctx}");
                    Verdict::Leak
                }
                other => panic!("unknown truth verdict {other}"),
            };
            assert_eq!(b.verdict, want, "{ctx}");
            assert_eq!(b.probes, t["probe_count"].as_u64().unwrap(), "probe count, {ctx}");
            match t["expected_driver"].as_str() {
                Some(d) => {
                    let got = b.driver.unwrap_or_else(|| panic!("no driver, {ctx}"));
                    assert_eq!(got.kind.name(), d, "{ctx}");
                    let want = t["sockets_per_driver"].as_f64().unwrap();
                    assert!(
                        (got.per_event - want).abs() <= 0.1 * want,
                        "sockets per driver {} vs {want}, {ctx}",
                        got.per_event
                    );
                    assert!(got.ci95.0 <= got.per_event && got.per_event <= got.ci95.1, "{ctx}");
                }
                None => assert!(b.driver.is_none(), "{ctx}"),
            }
            let main = b.probers.iter().max_by_key(|p| p.count).unwrap_or_else(|| panic!("no prober, {ctx}"));
            let want = t["probe_interval_s"].as_f64().unwrap();
            let got = main.interval_s.unwrap();
            assert!((got - want).abs() <= 0.05 * want, "interval {got} vs {want}, {ctx}");
            checked += 1;
        }
    }
    assert!(checked >= 19, "only {checked} backends checked");
}

#[test]
fn agent_and_plain_checks_sockets_follow_the_agent_only() {
    let r = report("mixed-agent", true);
    let b = backend(&r, "127.0.0.1:18121");
    let d = b.driver.unwrap();
    assert_eq!(d.kind.name(), "handshake_rst");
    // Two probers against the same server: plain checks every ~200 ms, agent checks slower.
    let kinds: Vec<&str> = b.probers.iter().map(|p| p.kind.name()).collect();
    assert!(kinds.contains(&"halfopen_rst") && kinds.contains(&"handshake_rst"), "{kinds:?}");
    let per_probe_overall = d.per_event * d.events as f64 / b.probes as f64;
    assert!((per_probe_overall - 27.0 / 178.0).abs() < 0.03, "{per_probe_overall}");
}

#[test]
fn a_leak_fed_by_reset_traffic_is_blamed_on_traffic_not_probes() {
    let r = report("traffic-rst", true);
    assert_eq!(backend(&r, "127.0.0.1:18151").driver.unwrap().kind.name(), "traffic_rst");
    let healthy = backend(&r, "127.0.0.1:18152");
    assert_eq!(healthy.verdict, Verdict::Ok);
    assert!(healthy.remedies.is_empty());
    let leaky = backend(&r, "127.0.0.1:18151");
    assert!(
        explain::remedies(leaky).iter().any(|m| m.contains("traffic that ends in a reset")),
        "{:?}",
        leaky.remedies
    );
}

#[test]
fn without_samples_a_reset_leak_is_unknown_and_says_how_to_check() {
    let r = report("reset-leak", false);
    assert_eq!(r.verdict, Verdict::Unknown);
    for name in ["127.0.0.1:18101", "127.0.0.1:18102"] {
        let b = backend(&r, name);
        assert_eq!((b.verdict, b.sockets_source), (Verdict::Unknown, SocketsSource::Wire));
        assert!(b.driver.is_none());
        assert!(b.evidence.iter().any(|e| matches!(e, Finding::ResetsInvisible { .. })), "{:?}", b.evidence);
        assert!(b.remedies.contains(&Remedy::MeasureHost { port: b.port }), "{:?}", b.remedies);
        assert!(explain::remedies(b).iter().any(|m| m.contains("--sockets") && m.contains("hcleak sample")));
    }
}

#[test]
fn close_wait_is_visible_on_the_wire() {
    let r = report("close-wait", false);
    let b = backend(&r, "127.0.0.1:18141");
    assert_eq!(b.verdict, Verdict::Leak);
    let d = b.driver.unwrap();
    assert_eq!(d.kind.name(), "connect_fin");
    assert!((d.per_event - 1.0).abs() < 0.1, "{d:?}");
    assert!(b.close_wait_now >= 100, "{}", b.close_wait_now);
    assert_eq!(backend(&r, "127.0.0.1:18142").verdict, Verdict::Ok);
}

#[test]
fn plain_haproxy_checks_are_ok_on_the_wire() {
    let r = report("plain-check", false);
    assert_eq!(r.verdict, Verdict::Ok);
    for b in &r.backends {
        assert_eq!(b.kinds.iter().map(|(k, _)| k.name()).collect::<Vec<_>>(), vec!["halfopen_rst"]);
    }
}

#[test]
fn a_backend_that_stopped_answering_says_when_and_after_how_many_probes() {
    let r = report("stop-accepting", false);
    let b = backend(&r, "127.0.0.1:18161");
    assert_eq!(b.verdict, Verdict::Leak);
    let s = b.stopped.unwrap();
    let t = truth("stop-accepting");
    let first_unanswered = t["127.0.0.1:18161"]["connections_by_kind"]["unanswered"]["first_ts"].as_f64().unwrap();
    assert!((s.at as f64 / 1e9 - first_unanswered).abs() < 0.01, "{s:?}");
    // Handshakes the kernel completed before the queue filled: 40 accepted + 9 queued.
    assert_eq!(s.probes_before, 49);
    assert_eq!(b.exhaustion_eta_s, Some(0.0));
    assert_eq!(backend(&r, "127.0.0.1:18162").stopped, None);
}

#[test]
fn a_restart_with_refusals_is_ok() {
    let r = report("restart", true);
    let b = backend(&r, "127.0.0.1:18171");
    assert_eq!(b.verdict, Verdict::Ok);
    assert!(b.kinds.iter().any(|(k, n)| k.name() == "refused" && *n >= 5), "{:?}", b.kinds);
}

#[test]
fn limit_gives_a_time_to_exhaustion() {
    let (conns, _, _) = read_flows(&[diag("reset-leak.pcap")], None, FlowConfig::default()).unwrap();
    let mut b = Backends::new();
    for c in &conns {
        b.add(c);
    }
    let host = read_csv(&diag("reset-leak.sockets.csv")).unwrap();
    let r = judge(&b, Some(&host), &Options { limit: Some(1024), min_conns: 3 });
    let l = backend(&r, "127.0.0.1:18101");
    let d = l.driver.unwrap();
    let eta = l.exhaustion_eta_s.unwrap();
    let expect = (1024.0 - l.sockets_now.unwrap()) / (d.per_event * d.rate_per_s);
    assert!((eta - expect).abs() < 1e-6);
    // One probe every ~0.4 s keeps one socket: ~946 sockets left last about 6 minutes.
    assert!((300.0..480.0).contains(&eta), "{eta}");
}

/// A synthetic segment between client 10.0.0.2:`port` and server 10.0.0.1:8080, at `t_ms`.
fn seg(
    t_ms: i64,
    from_client: bool,
    port: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    len: u32,
) -> hcleak::decode::Segment<'static> {
    let (c, s) = ([10, 0, 0, 2], [10, 0, 0, 1]);
    let (src, dst, sport, dport) = if from_client { (c, s, port, 8080) } else { (s, c, 8080, port) };
    hcleak::decode::Segment {
        ts: 1_700_000_000_000_000_000 + t_ms * 1_000_000,
        src: src.into(),
        dst: dst.into(),
        sport,
        dport,
        seq,
        ack,
        flags,
        window: Some(512),
        payload_len: len,
        payload: &[],
    }
}

/// Regression (benchmark traffic): long-lived connections that open during a capture and are still
/// open at its end are not a leak — both sides keep them — however steadily their number grows.
#[test]
fn long_lived_open_connections_are_not_a_wire_leak() {
    use hcleak::decode::{ACK, PSH, SYN};
    use hcleak::flow::FlowTable;
    let mut table = FlowTable::new(FlowConfig::default());
    let mut b = Backends::new();
    for i in 0..60u16 {
        let (t, p) = (i64::from(i) * 1000, 20000 + i);
        for s in [
            seg(t, true, p, SYN, 100, 0, 0),
            seg(t + 1, false, p, SYN | ACK, 500, 101, 0),
            seg(t + 2, true, p, ACK, 101, 501, 0),
            seg(t + 3, true, p, ACK | PSH, 101, 501, 40),
            seg(t + 4, false, p, ACK | PSH, 501, 141, 400),
        ] {
            table.push(&s, &mut |c| b.add(&c));
        }
    }
    table.finish(&mut |c| b.add(&c));
    let r = judge(&b, None, &Options { limit: None, min_conns: 3 });
    let be = backend(&r, "10.0.0.1:8080");
    assert_eq!(be.verdict, Verdict::Ok, "{be:#?}");
    assert_eq!(be.sockets_now, Some(60.0), "they are still visibly held");
    assert!(be.driver.is_none());
}

/// Regression (benchmark traffic): a server that closed first and then ACKed the client's FIN is
/// not in CLOSE_WAIT; one that ACKed the client's FIN and never closed is.
#[test]
fn close_wait_needs_the_server_to_not_have_closed() {
    use hcleak::backend::close_wait_span;
    use hcleak::decode::{ACK, FIN, PSH, SYN};
    use hcleak::flow::FlowTable;
    let seg = |t_ms: i64, from_client: bool, flags: u8, seq: u32, ack: u32, len: u32| {
        seg(t_ms, from_client, 40000, flags, seq, ack, len)
    };
    let open = [
        seg(0, true, SYN, 100, 0, 0),
        seg(1, false, SYN | ACK, 500, 101, 0),
        seg(2, true, ACK | PSH, 101, 501, 10),
        seg(3, false, ACK | PSH, 501, 111, 20),
    ];
    let run = |tail: &[hcleak::decode::Segment<'static>]| {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        for s in open.iter().chain(tail) {
            t.push(s, &mut |c| out.push(c));
        }
        t.finish(&mut |c| out.push(c));
        assert_eq!(out.len(), 1);
        close_wait_span(&out[0])
    };
    let server_first =
        [seg(4, false, FIN | ACK, 521, 111, 0), seg(5, true, FIN | ACK, 111, 522, 0), seg(6, false, ACK, 522, 112, 0)];
    assert_eq!(run(&server_first), None);
    let abandoned = [seg(4, true, FIN | ACK, 111, 521, 0), seg(5, false, ACK, 521, 112, 0)];
    assert_eq!(run(&abandoned), Some((1_700_000_000_000_000_000 + 5_000_000, None)));
}

/// Synthetic connections for the verdict rules: one script per connection, sequence numbers kept
/// by the helper. `(ms after start, from client, flags, payload length)`.
struct Wire {
    table: hcleak::flow::FlowTable,
    b: Backends,
    payload: Vec<u8>,
}

impl Wire {
    fn new() -> Wire {
        Wire {
            table: hcleak::flow::FlowTable::new(FlowConfig::default()),
            b: Backends::new(),
            payload: b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
        }
    }
    /// One connection from `client`:`port` to 10.0.0.1:8080 starting at `t_ms`. `req` is what the
    /// client's payload starts with (`GET /…` or anything else).
    fn conn(&mut self, t_ms: i64, client: [u8; 4], port: u16, req: &[u8], script: &[(i64, bool, u8, u32)]) {
        let (mut cseq, mut sseq) = (1000u32, 5000u32);
        let mut buf = req.to_vec();
        buf.resize(64, b'x');
        let rsp = self.payload[self.payload.len() - 38..].to_vec();
        for &(dt, from_client, flags, len) in script {
            let (src, dst, sport, dport) =
                if from_client { (client, [10, 0, 0, 1], port, 8080) } else { ([10, 0, 0, 1], client, 8080, port) };
            let (seq, ack) = if from_client { (cseq, sseq) } else { (sseq, cseq) };
            let payload: &[u8] = match (from_client, len) {
                (_, 0) => &[],
                (true, n) => &buf[..(n as usize).min(buf.len())],
                (false, n) => &rsp[..(n as usize).min(rsp.len())],
            };
            let s = hcleak::decode::Segment {
                ts: 1_700_000_000_000_000_000 + (t_ms + dt) * 1_000_000,
                src: src.into(),
                dst: dst.into(),
                sport,
                dport,
                seq,
                ack: if flags & hcleak::decode::ACK != 0 { ack } else { 0 },
                flags,
                window: Some(512),
                payload_len: len,
                payload,
            };
            let b = &mut self.b;
            self.table.push(&s, &mut |c| b.add(&c));
            let used = len + u32::from(flags & hcleak::decode::SYN != 0) + u32::from(flags & hcleak::decode::FIN != 0);
            if from_client {
                cseq = cseq.wrapping_add(used);
            } else {
                sseq = sseq.wrapping_add(used);
            }
        }
    }
    fn judge(mut self, host: Option<&hcleak::sockets::HostSamples>) -> BackendReport {
        let b = &mut self.b;
        self.table.finish(&mut |c| b.add(&c));
        let r = judge(&self.b, host, &Options { limit: None, min_conns: 1 });
        backend(&r, "10.0.0.1:8080").clone()
    }
}

mod script {
    use hcleak::decode::{ACK, FIN, PSH, RST, SYN};
    /// An HTTP exchange answered and closed by the server.
    pub const ANSWERED: &[(i64, bool, u8, u32)] = &[
        (0, true, SYN, 0),
        (1, false, SYN | ACK, 0),
        (2, true, ACK, 0),
        (3, true, ACK | PSH, 40),
        (5, false, ACK | PSH, 38),
        (6, false, FIN | ACK, 0),
        (7, true, FIN | ACK, 0),
        (8, false, ACK, 0),
    ];
    /// A request the kernel ACKed and nobody answered; the client gives up with a reset.
    pub const STALLED: &[(i64, bool, u8, u32)] = &[
        (0, true, SYN, 0),
        (1, false, SYN | ACK, 0),
        (2, true, ACK, 0),
        (3, true, ACK | PSH, 40),
        (4, false, ACK, 0),
        (900, true, RST | ACK, 0),
    ];
    /// HAProxy's `tcp-check send PING` without `expect`: payload on the third ACK, then a reset.
    pub const PING_RST: &[(i64, bool, u8, u32)] = &[
        (0, true, SYN, 0),
        (1, false, SYN | ACK, 0),
        (2, true, ACK | PSH, 6),
        (3, false, ACK, 0),
        (4, true, RST | ACK, 0),
    ];
    /// A SYN nobody answers.
    pub const UNANSWERED: &[(i64, bool, u8, u32)] = &[(0, true, SYN, 0)];
    /// A SYN answered by a reset.
    pub const REFUSED: &[(i64, bool, u8, u32)] = &[(0, true, SYN, 0), (1, false, RST | ACK, 0)];
}

const CLIENT: [u8; 4] = [10, 0, 0, 2];
const PROBER: [u8; 4] = [10, 0, 0, 3];

#[test]
fn a_backend_that_refuses_at_the_end_is_suspicious() {
    let mut w = Wire::new();
    for i in 0..10 {
        w.conn(i * 500, CLIENT, 20000 + i as u16, b"GET / HTTP/1.1", script::ANSWERED);
    }
    for i in 10..14 {
        w.conn(i * 500, PROBER, 30000 + i as u16, b"", script::REFUSED);
    }
    let b = w.judge(None);
    assert_eq!(b.verdict, Verdict::Suspicious, "{b:#?}");
    assert!(b.evidence.iter().any(|f| matches!(f, Finding::Refusing { .. })), "{:?}", b.evidence);
}

#[test]
fn checks_that_never_get_a_reply_by_design_are_not_unanswered() {
    // Regression (issue 13.1): HAProxy `tcp-check send PING` with no `expect`, and client traffic
    // that stops partway: the checks after it were called "stopped answering … accept queue full".
    let mut w = Wire::new();
    for i in 0..40 {
        w.conn(i * 200, PROBER, 30000 + i as u16, b"PING\r\n", script::PING_RST);
    }
    for i in 0..10 {
        w.conn(i * 300 + 50, CLIENT, 20000 + i as u16, b"GET / HTTP/1.1", script::ANSWERED);
    }
    let b = w.judge(None);
    assert_eq!(b.stopped, None, "{:?}", b.evidence);
    assert!(!b.evidence.iter().any(|f| matches!(f, Finding::Stopped(_) | Finding::NeverAccepted { .. })));
    assert_ne!(b.verdict, Verdict::Leak);
    assert_eq!(b.kinds.iter().find(|(k, _)| k.name() == "data_rst").map(|x| x.1), Some(40), "{:?}", b.kinds);
}

/// HTTP checks answered for 8 s, then left without a response: it stopped answering.
fn http_checks_that_stop_being_answered() -> Wire {
    let mut w = Wire::new();
    for i in 0..40 {
        let s = if i < 30 { script::ANSWERED } else { script::STALLED };
        w.conn(i * 200, PROBER, 30000 + i as u16, b"GET /health HTTP/1.1", s);
    }
    w
}

#[test]
fn requests_that_stop_getting_responses_mean_it_stopped_answering() {
    let b = http_checks_that_stop_being_answered().judge(None);
    let s = b.stopped.unwrap_or_else(|| panic!("{:?}", b.evidence));
    assert_eq!(s.unanswered_since, 10);
    assert_eq!(s.at, 1_700_000_000_000_000_000 + 30 * 200 * 1_000_000);
    assert_eq!(b.verdict, Verdict::Leak, "probes that reached accept() before it stopped: {:?}", b.evidence);
}

#[test]
fn host_samples_with_an_idle_accept_queue_overrule_the_wire() {
    use hcleak::sockets::{BackendSpec, HostSamples, Sample};
    let mut h = HostSamples::default();
    for i in 0..20 {
        let s = Sample {
            ts: 1_700_000_000_000_000_000 + i * 500_000_000,
            sockets: 2,
            hidden: Some(0),
            close_wait: Some(0),
            unaccepted: Some(0),
            accept_queue: Some(0),
            listen_overflows: Some(7),
            ..Sample::default()
        };
        h.push(BackendSpec::Port(8080), s);
    }
    let b = http_checks_that_stop_being_answered().judge(Some(&h));
    assert_eq!(b.stopped, None);
    assert!(b.evidence.iter().any(|f| matches!(f, Finding::StallOverruled { queue: 0, .. })), "{:?}", b.evidence);
    assert_eq!(b.verdict, Verdict::Ok, "{:?}", b.evidence);
}

#[test]
fn a_server_that_never_answered_anything_is_not_blamed_on_probes() {
    // Regression (issue 13.2): nothing ever accepted — a burst of requests fills the queue, none
    // is answered, later SYNs are dropped — was reported as a probe-driven leak.
    let mut w = Wire::new();
    for i in 0..9 {
        w.conn(i * 10, CLIENT, 20000 + i as u16, b"GET / HTTP/1.1", script::STALLED);
    }
    for i in 0..8 {
        w.conn(100 + i * 200, PROBER, 30000 + i as u16, b"", script::UNANSWERED);
    }
    let b = w.judge(None);
    assert_eq!(b.verdict, Verdict::Suspicious, "{:?}", b.evidence);
    assert!(
        b.evidence.iter().any(|f| matches!(f, Finding::NeverAccepted { requests_unanswered: 9, .. })),
        "{:?}",
        b.evidence
    );
    assert_eq!(b.stopped, None);
    assert!(b.remedies.contains(&Remedy::NeverAccepted { port: 8080 }));
}

#[test]
fn a_server_fin_that_acknowledges_the_client_fin_is_no_close_wait() {
    use hcleak::decode::{ACK, FIN, PSH, SYN};
    let mut w = Wire::new();
    for i in 0..10 {
        // The client closes first; the server's FIN and its ACK of the client's FIN are one packet.
        let s: &[(i64, bool, u8, u32)] = &[
            (0, true, SYN, 0),
            (1, false, SYN | ACK, 0),
            (2, true, ACK, 0),
            (3, true, ACK | PSH, 40),
            (4, false, ACK | PSH, 38),
            (5, true, FIN | ACK, 0),
            (6, false, FIN | ACK, 0),
            (7, true, ACK, 0),
        ];
        w.conn(i * 200, CLIENT, 20000 + i as u16, b"GET / HTTP/1.1", s);
    }
    let b = w.judge(None);
    assert_eq!(b.close_wait_now, 0, "{b:#?}");
    assert_eq!(b.verdict, Verdict::Ok);
}

/// Regression (issue 13.8): every remedy assumed Thousand Island. It is named only where the
/// evidence shows the Erlang VM; otherwise the advice is the generic one plus the prober's side.
#[test]
fn thousand_island_advice_only_for_the_erlang_vm() {
    use hcleak::sockets::Comm;
    let (conns, _, _) = read_flows(&[diag("reset-leak.pcap")], None, FlowConfig::default()).unwrap();
    let mut b = Backends::new();
    for c in &conns {
        b.add(c);
    }
    let judged = |process: &str| {
        let mut host = read_csv(&diag("reset-leak.sockets.csv")).unwrap();
        for (_, v) in &mut host.backends {
            for s in v.iter_mut() {
                s.process = Comm::new(process);
            }
        }
        let r = judge(&b, Some(&host), &Options { limit: None, min_conns: 3 });
        backend(&r, "127.0.0.1:18101").clone()
    };
    let beam = judged("beam.smp");
    assert_eq!(beam.verdict, Verdict::Leak);
    assert!(beam.software.is_erlang());
    assert!(beam.remedies.contains(&Remedy::ForDriver { kind: beam.driver.unwrap().kind, erlang: true }));
    assert!(explain::remedies(&beam).iter().any(|m| m.contains("Thousand Island to ≥ 1.3.12")), "{:?}", beam.remedies);
    assert!(explain::evidence(&beam)[0].contains("beam.smp (the Erlang VM"), "{:?}", beam.evidence);

    let python = judged("python3");
    assert_eq!(python.verdict, Verdict::Leak);
    assert!(!python.software.is_erlang());
    let text = explain::remedies(&python).join("\n");
    assert!(!text.contains("Thousand Island"), "{text}");
    assert!(text.contains("ECONNRESET") && text.contains("option httpchk"), "{text}");
}

/// Recordings with real probers nobody on this project wrote (fixtures/record/record-all.sh
/// `probers`): HAProxy tcp-check variants, the Prometheus blackbox exporter, monitoring-plugins,
/// Varnish, against nginx, gunicorn, http.server and leaking servers. Truth from the probers' own
/// counts and the servers' logs.
const REAL_PROBERS: [&str; 9] = [
    "tcpcheck-send",
    "tcpcheck-connect",
    "blackbox-http",
    "blackbox-tcp",
    "check-http",
    "check-tcp",
    "varnish-probe",
    "never-accept",
    "httpchk-gunicorn",
];

fn verdict_named(name: &str) -> Verdict {
    match name {
        "ok" => Verdict::Ok,
        "suspicious" => Verdict::Suspicious,
        "leak" => Verdict::Leak,
        other => panic!("unknown truth verdict {other}"),
    }
}

/// With host samples every backend gets its true verdict and driver, sockets per driver event
/// within 10%, and a probe count within 2% of the prober's own count (issue 13, "Done when").
#[test]
fn real_probers_with_host_samples_match_the_truth() {
    let mut checked = 0;
    for scenario in REAL_PROBERS {
        let r = report(scenario, true);
        for (name, t) in truth(scenario) {
            let b = backend(&r, &name);
            let ctx = format!("{scenario} {name}: {:?} {:?} {:?}", b.kinds, b.driver, b.evidence);
            assert_eq!(b.sockets_source, SocketsSource::Host, "{ctx}");
            assert_eq!(b.verdict, verdict_named(t["expected_verdict"].as_str().unwrap()), "{ctx}");
            let want = t["probe_count"].as_u64().unwrap() as f64;
            assert!((b.probes as f64 - want).abs() <= 0.02 * want, "probes {} vs {want}, {ctx}", b.probes);
            match t["expected_driver"].as_str() {
                Some(d) => {
                    let got = b.driver.unwrap_or_else(|| panic!("no driver, {ctx}"));
                    assert_eq!(got.kind.name(), d, "{ctx}");
                    let want = t["sockets_per_driver_by_packets"].as_f64().unwrap();
                    assert!(
                        (got.per_event - want).abs() <= 0.1 * want,
                        "{} per driver vs {want}, {ctx}",
                        got.per_event
                    );
                }
                None => assert!(b.driver.is_none(), "{ctx}"),
            }
            let main = b.probers.iter().max_by_key(|p| p.count).unwrap_or_else(|| panic!("no prober, {ctx}"));
            let want = t["probe_interval_s"].as_f64().unwrap();
            let got = main.interval_s.unwrap();
            assert!((got - want).abs() <= 0.05 * want, "interval {got} vs {want}, {ctx}");
            checked += 1;
        }
    }
    assert_eq!(checked, 18);
}

/// From the wire alone no healthy backend is called leak or suspicious; a leak the wire can see
/// (CLOSE_WAIT) is a leak, and one hidden behind resets is `unknown` with the reason.
#[test]
fn real_probers_on_the_wire_alone_never_raise_a_false_alarm() {
    for scenario in REAL_PROBERS {
        let r = report(scenario, false);
        for (name, t) in truth(scenario) {
            let b = backend(&r, &name);
            let ctx = format!("{scenario} {name}: {:?} {:?}", b.kinds, b.evidence);
            let hidden = b.evidence.iter().any(|f| matches!(f, Finding::ResetsInvisible { .. }));
            match (t["expected_verdict"].as_str().unwrap(), b.verdict) {
                ("ok", Verdict::Ok) | ("leak", Verdict::Leak) | ("suspicious", Verdict::Suspicious) => {}
                (_, Verdict::Unknown) if hidden => {}
                (want, got) => panic!("want {want}, got {got:?}, {ctx}"),
            }
        }
    }
}

#[test]
fn a_server_that_never_accepted_is_suspicious_with_its_accept_queue() {
    let r = report("never-accept", true);
    let b = backend(&r, "127.0.0.1:18261");
    assert_eq!(b.verdict, Verdict::Suspicious);
    assert_eq!(b.stopped, None);
    let queue = b.evidence.iter().find_map(|f| match f {
        Finding::NeverAccepted { queue, .. } => Some(*queue),
        _ => None,
    });
    assert_eq!(queue, Some(Some(9)), "backlog 8: the queue holds 9, {:?}", b.evidence);
    assert!(explain::evidence(b).iter().any(|e| e.starts_with("never accepted a connection; accept queue full")));
    // The burst's clients retried their SYNs: those are not the prober's.
    assert_eq!(b.probes, 60, "{:?}", b.kinds);
}

#[test]
fn health_checker_user_agents_make_http_probers() {
    for (scenario, name, agent) in
        [("blackbox-http", "127.0.0.1:18212", "Blackbox Exporter"), ("check-http", "127.0.0.1:18232", "check_http")]
    {
        let r = report(scenario, false);
        let b = backend(&r, name);
        assert_eq!(
            b.kinds.iter().map(|(k, _)| k.name()).collect::<Vec<_>>(),
            vec!["http_check"],
            "{agent}: {:?}",
            b.kinds
        );
        assert!(b.probers[0].request.as_deref().is_some_and(|q| q.starts_with("GET /health")), "{agent}");
    }
    // Varnish sends no User-Agent: its rhythm alone makes it a prober.
    let r = report("varnish-probe", false);
    assert_eq!(backend(&r, "127.0.0.1:18252").probes, 119);
}

/// Past the group cap (4096 sources per backend), further sources share an "other clients"
/// bucket: their requests are never probes however steady, connections that send nothing stay
/// probes of their kind, and the report says how many connections the bucket holds.
#[test]
fn sources_past_the_group_cap_are_other_clients_never_probers() {
    use hcleak::decode::{ACK, FIN, SYN};
    let mut w = Wire::new();
    for i in 0..4100u32 {
        let ip = [10, 1, (i >> 8) as u8, i as u8];
        w.conn(i64::from(i), ip, 20000, b"GET /api HTTP/1.1", script::ANSWERED);
    }
    let connect_fin: &[(i64, bool, u8, u32)] = &[
        (0, true, SYN, 0),
        (1, false, SYN | ACK, 0),
        (2, true, ACK, 0),
        (3, true, FIN | ACK, 0),
        (4, false, FIN | ACK, 0),
        (5, true, ACK, 0),
    ];
    for i in 0..20 {
        // A steady HTTP prober and a connect-then-FIN prober, both new after the cap.
        w.conn(5000 + i * 200, PROBER, 30000 + i as u16, b"GET /health HTTP/1.1", script::ANSWERED);
        w.conn(5100 + i * 200, [10, 0, 0, 4], 30000 + i as u16, b"", connect_fin);
    }
    let b = w.judge(None);
    // 4096 groups made: 4 late clients, 20 HTTP checks and 20 connect-then-FIN in the buckets.
    assert_eq!(b.other_clients, 44, "{:?}", b.kinds);
    assert!(b.evidence.contains(&Finding::OtherClients { conns: 44 }));
    let kinds: BTreeMap<&str, u64> = b.kinds.iter().map(|(k, n)| (k.name(), *n)).collect();
    assert_eq!(kinds.get("http_check"), None, "{kinds:?}");
    assert_eq!(kinds.get("connect_fin"), Some(&20), "{kinds:?}");
    assert_eq!(kinds.get("traffic_fin"), Some(&4120), "{kinds:?}");
    assert!(b.probers.is_empty(), "no prober is named from a bucket: {:?}", b.probers);
}

/// A check answered only now and then (nginx answers `tcp-check send PING` with `400` in some
/// checks, racing the prober's reset) does not normally get a response: the ones left without
/// one at the end are not "stopped answering". Pins the nine-in-ten rule of a group's normal
/// answer: a group answered seven times in ten is not expected to answer.
#[test]
fn a_check_answered_seven_times_in_ten_is_not_expected_to_answer() {
    use hcleak::decode::{ACK, FIN, PSH, RST, SYN};
    let answered: &[(i64, bool, u8, u32)] = &[
        (0, true, SYN, 0),
        (1, false, SYN | ACK, 0),
        (2, true, ACK | PSH, 6),
        (3, false, ACK | PSH, 38),
        (4, false, FIN | ACK, 0),
        (5, true, RST | ACK, 0),
    ];
    let mut w = Wire::new();
    for i in 0..60 {
        let s = if i % 10 < 7 && i < 55 { answered } else { script::PING_RST };
        w.conn(i * 200, PROBER, 30000 + i as u16, b"PING\r\n", s);
    }
    let b = w.judge(None);
    assert_eq!(b.stopped, None, "{:?}", b.evidence);
    assert_eq!(b.probes, 60, "{:?}", b.kinds);
}

/// A client reset after the server had closed (its FIN came first) cannot leave a socket
/// behind: the application already closed it. Such connections are no reason to say "unknown".
#[test]
fn resets_after_the_server_closed_hide_nothing() {
    use hcleak::decode::{ACK, FIN, PSH, RST, SYN};
    // HAProxy's httpchk against a server that answers and closes at once: S h D a d f R.
    let closed_then_reset: &[(i64, bool, u8, u32)] = &[
        (0, true, SYN, 0),
        (1, false, SYN | ACK, 0),
        (2, true, ACK | PSH, 40),
        (3, false, ACK | PSH, 38),
        (4, false, FIN | ACK, 0),
        (5, true, RST | ACK, 0),
    ];
    let mut w = Wire::new();
    for i in 0..30 {
        w.conn(i * 200, PROBER, 30000 + i as u16, b"GET /health HTTP/1.0", closed_then_reset);
    }
    let b = w.judge(None);
    assert!(!b.evidence.iter().any(|f| matches!(f, Finding::ResetsInvisible { .. })), "{:?}", b.evidence);
    assert_eq!(b.verdict, Verdict::Ok, "{:?}", b.evidence);
    assert_eq!(b.kinds.iter().map(|(k, n)| (k.name(), *n)).collect::<Vec<_>>(), vec![("http_check", 30)]);
}
