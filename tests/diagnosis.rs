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
