use super::growth::*;
use super::*;
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
