use super::growth::*;
use super::*;
use crate::classify::Ending;
use crate::decode::Ts;
use crate::stats;
use crate::units::human_duration;

#[test]
fn the_incident_arithmetic() {
    // 4000 sockets, one probe every 5 s, one socket lost per probe: about 5.6 hours.
    let s = time_to_exhaustion(4000.0, 0.0, 1.0, 1.0 / 5.0).unwrap();
    assert!((s - 20_000.0).abs() < 1e-6);
    assert!((s / 3600.0 - 5.56).abs() < 0.01);
    assert_eq!(human_duration(s), "5h33m");
    assert_eq!(time_to_exhaustion(4000.0, 100.0, 0.0, 0.2), None, "no loss, no end");
    assert_eq!(time_to_exhaustion(100.0, 150.0, 1.0, 0.2), Some(0.0), "already over");
}

#[test]
fn growth_rules() {
    let fit_of = |s: &[f64], x: &[f64]| (stats::ols(x, s).unwrap(), stats::spearman(x, s));
    let x: Vec<f64> = (0..50).map(f64::from).collect();
    // One socket per event, steadily: a leak.
    let s: Vec<f64> = x.iter().map(|v| 3.0 + v).collect();
    let (f, r) = fit_of(&s, &x);
    assert_eq!(decide_growth(&s, &f, r, 50), Verdict::Leak);
    // Flat with noise: ok.
    let s: Vec<f64> = (0..50).map(|i| 3.0 + (i % 2) as f64).collect();
    assert_eq!(decide_growth(&s, &stats::ols(&x, &s).unwrap(), stats::spearman(&x, &s), 50), Verdict::Ok);
    // One burst of 20 that stays: not a steady leak.
    let s: Vec<f64> = (0..50).map(|i| if i < 25 { 3.0 } else { 23.0 }).collect();
    let (f, r) = fit_of(&s, &x);
    assert_ne!(decide_growth(&s, &f, r, 50), Verdict::Leak);
    // A burst that is released again: ok.
    let s: Vec<f64> = (0..50).map(|i| if (20..25).contains(&i) { 30.0 } else { 3.0 }).collect();
    let (f, r) = fit_of(&s, &x);
    assert_eq!(decide_growth(&s, &f, r, 50), Verdict::Ok);
}

fn judged(s: &[f64], events: u64) -> (Verdict, f64) {
    let x: Vec<f64> = (0..s.len()).map(|i| i as f64).collect();
    let (f, rho) = (stats::ols(&x, s).unwrap(), stats::spearman(&x, s));
    (decide_growth(s, &f, rho, events), rho)
}

#[test]
fn one_jump_in_a_rising_curve_is_suspicious_not_a_leak() {
    // Strictly rising (ρ = 1), but 20 of its 25 sockets came in one step: not steady.
    let s: Vec<f64> = (0..50).map(|i| 3.0 + 0.1 * i as f64 + if i >= 25 { 20.0 } else { 0.0 }).collect();
    let (v, rho) = judged(&s, 50);
    assert!(rho > 0.99, "{rho}");
    assert_eq!(v, Verdict::Suspicious);
    // The same growth spread over the curve is a leak.
    let s: Vec<f64> = (0..50).map(|i| 3.0 + 0.51 * i as f64).collect();
    assert_eq!(judged(&s, 50).0, Verdict::Leak);
}

#[test]
fn rank_correlation_below_point_nine_is_suspicious() {
    // Rising by one per event with a wobble of ±9: ρ between 0.6 and 0.9.
    let wobble = [0.0, 9.0, -9.0, 4.0, -4.0, 7.0, -7.0];
    let s: Vec<f64> = (0..60).map(|i| 20.0 + 0.6 * i as f64 + wobble[i % 7]).collect();
    let (v, rho) = judged(&s, 60);
    assert!((0.6..0.9).contains(&rho), "{rho}");
    assert_eq!(v, Verdict::Suspicious);
    // Less wobble, ρ above 0.9: a leak.
    let s: Vec<f64> = (0..60).map(|i| 20.0 + 0.6 * i as f64 + wobble[i % 7] / 4.0).collect();
    let (v, rho) = judged(&s, 60);
    assert!(rho >= 0.9, "{rho}");
    assert_eq!(v, Verdict::Leak);
}

#[test]
fn too_few_events_or_too_little_growth_is_not_a_leak() {
    let s: Vec<f64> = (0..50).map(|i| 3.0 + 0.51 * i as f64).collect();
    assert_eq!(judged(&s, 4).0, Verdict::Suspicious, "4 driver events are not enough for a leak");
    assert_eq!(judged(&s, 5).0, Verdict::Leak);
    // Growth (last five against first five samples) of 2.9 sockets: nothing to report; 3.1: a leak.
    let rise = |grew: f64| (0..50).map(|i| 3.0 + grew * 49.0 / 45.0 * i as f64 / 49.0).collect::<Vec<f64>>();
    assert_eq!(judged(&rise(2.9), 50).0, Verdict::Ok);
    assert_eq!(judged(&rise(3.1), 50).0, Verdict::Leak);
    // Too short a curve.
    assert_eq!(judged(&[1.0, 5.0, 9.0, 13.0], 50).0, Verdict::Ok);
}

#[test]
fn growth_released_again_is_ok() {
    // Up by 20, then back down to 5 above the start: less than half the peak is kept.
    let s: Vec<f64> = (0..60).map(|i| if i < 30 { 3.0 + i as f64 * 0.7 } else { 8.0 }).collect();
    assert_eq!(judged(&s, 60).0, Verdict::Ok);
}

#[test]
fn driver_ties_go_to_the_level_fit() {
    // Step correlations within 0.05: the better level fit wins, either way round.
    assert!(beats((0.90, 0.95), (0.94, 0.80)));
    assert!(!beats((0.94, 0.80), (0.90, 0.95)));
    // More than 0.05 apart: the step correlation wins whatever the level fit.
    assert!(beats((0.96, 0.50), (0.90, 0.99)));
    assert!(!beats((0.90, 0.99), (0.96, 0.50)));
    // Step correlations of 0.2 and below count as none: the level fit decides.
    assert!(beats((0.1, 0.9), (0.2, 0.8)));
    assert!(!beats((0.2, 0.8), (0.1, 0.9)));
    assert!(beats((0.26, 0.8), (0.1, 0.9)));
}

/// One source probes with handshake-then-RST every 2 s; then the server is gone and its SYNs are
/// refused at irregular times (a prober's fast retries). Those refusals are the prober's failed
/// probes, not clients': the source, not only the rhythm, makes them probes.
#[test]
fn a_probers_refused_syns_are_probes_even_off_its_rhythm() {
    use crate::testkit::{conns, Script};
    let mut scripts: Vec<Script> = (0..10u16)
        .map(|i| Script::new(41000 + i, i64::from(i) * 2000).c("S", b"").s("SA", b"").c("A", b"").c("RA", b""))
        .collect();
    for (j, ms) in [21_000, 21_300, 24_000, 24_100, 29_000].into_iter().enumerate() {
        scripts.push(Script::new(42000 + j as u16, ms).c("S", b"").s("RA", b""));
    }
    // And one half-open probe, a group of its own: one connection has no rate.
    scripts.push(Script::new(43000, 30_000).c("S", b"").s("SA", b"").c("R", b""));
    let mut all = Backends::new();
    for c in conns(scripts) {
        all.add(&c);
    }
    let r = judge(&all, None, &Options::default());
    let b = &r.backends[0];
    assert!(b.kinds.contains(&(Kind::HandshakeRst, 10)) && b.kinds.contains(&(Kind::Refused, 5)), "{:?}", b.kinds);
    let p = b.probers.iter().find(|p| p.kind == Kind::HandshakeRst).expect("the prober");
    // Ten probes over 18 s: one every 2 s.
    assert!((p.rate_per_s - 0.5).abs() < 0.01 && p.interval_s.is_some_and(|i| (i - 2.0).abs() < 0.01), "{p:?}");
    assert_eq!(p.response_time_s, None, "nothing was asked, nothing answered");
    let one = b.probers.iter().find(|p| p.kind == Kind::HalfOpenRst).expect("the half-open probe");
    assert_eq!((one.count, one.rate_per_s, one.interval_s), (1, 0.0, None));
}

/// The driver is the kind whose arrivals line up with the socket increments, even when another
/// kind's steady count fits the level better (sockets that also drift up with time).
#[test]
fn the_step_correlation_picks_the_driver_over_a_better_level_fit() {
    let times: Vec<Ts> = (0..40).collect();
    // Five arrivals early on, each leaving a socket; the count also drifts up half a socket a step.
    let a: Vec<f64> = (0..40).map(|t| f64::from([1, 3, 5, 7, 9].iter().filter(|&&x| x <= t).count() as u8)).collect();
    let b: Vec<f64> = (0..40).map(f64::from).collect();
    let sockets: Vec<f64> = (0..40).map(|t| a[t as usize] + 0.5 * f64::from(t)).collect();
    let c = Curves { times, sockets, drivers: vec![(Kind::Traffic(Ending::Fin), b), (Kind::HandshakeRst, a)] };
    let (k, _, _) = pick_driver(&c).expect("a driver");
    assert_eq!(k, Kind::HandshakeRst);
    // A lead of exactly the tie margin is not a win: the level fit decides.
    assert!(!beats((0.5 + DRIVER_TIE, 0.1), (0.5, 0.9)));
}

#[test]
fn growth_compares_the_first_and_last_tenth() {
    // Twenty points: the first and last two are averaged.
    let mut s = vec![20.0; 20];
    (s[0], s[1], s[19]) = (0.0, 10.0, 30.0);
    let g = growth(&s);
    assert_eq!((g.start, g.end, g.max, g.largest_step), (5.0, 25.0, 30.0, 10.0));
}

#[test]
fn cumulative_counts_run_to_the_bucket_of_the_instant() {
    let tl = Timeline { origin: 0, width: 10, buckets: 5 };
    let s = Series(vec![1, 2, 3, 4, 5]);
    assert_eq!(cumulative_at(&s, &tl, 25), 6.0);
    assert_eq!(running(&s, &tl, &[5, 25, 49]), vec![1.0, 6.0, 15.0]);
}

#[test]
fn only_kinds_seen_three_times_that_reached_the_server_can_drive() {
    use super::steps::{candidates, KindAgg};
    let agg = |count| KindAgg { count, ..KindAgg::default() };
    let kinds = std::collections::BTreeMap::from([
        (Kind::HandshakeRst, agg(3)),
        (Kind::ConnectFin, agg(2)),
        (Kind::Refused, agg(9)),
        (Kind::Unanswered, agg(9)),
    ]);
    assert_eq!(candidates(&kinds), vec![Kind::HandshakeRst]);
}

/// HTTP checks answered 6 ms after the request: the prober's response time and statuses.
#[test]
fn an_http_probers_response_time_and_statuses() {
    use crate::testkit::{conns, Script};
    let scripts = (0..10u16).map(|i| {
        Script::new(44000 + i, i64::from(i) * 2000)
            .c("S", b"")
            .s("SA", b"")
            .c("PA", b"GET /health HTTP/1.1\r\n\r\n")
            .wait(5)
            .s("PA", b"HTTP/1.1 200 OK\r\n\r\n")
            .c("RA", b"")
    });
    let mut all = Backends::new();
    for c in conns(scripts.collect()) {
        all.add(&c);
    }
    let r = judge(&all, None, &Options::default());
    let p = &r.backends[0].probers[0];
    assert_eq!((p.kind, p.count, p.statuses.clone()), (Kind::HttpCheck, 10, vec![(200, 10)]));
    assert!(p.response_time_s.is_some_and(|t| (t - 0.006).abs() < 0.0005), "{p:?}");
}

#[test]
fn an_empty_capture_still_says_which_min_conns_applied() {
    let r = judge(&Backends::new(), None, &Options { limit: None, min_conns: 7 });
    assert_eq!((r.verdict, r.min_conns, r.backends.len()), (Verdict::Unknown, 7, 0));
}
