//! The growth rule: does a socket curve follow a cumulative event count steadily and
//! significantly? Curve sampling, driver choice and the thresholds a leak must pass.

use super::Verdict;
use crate::backend::{Series, Timeline};
use crate::classify::Kind;
use crate::decode::Ts;
use crate::stats::{self, Fit};

/// A socket curve and driver curves sampled at the same instants.
pub(super) struct Curves {
    pub(super) times: Vec<Ts>,
    pub(super) sockets: Vec<f64>,
    /// Cumulative events per candidate kind at those instants.
    pub(super) drivers: Vec<(Kind, Vec<f64>)>,
}

impl Curves {
    pub(super) fn truncate(&mut self, n: usize) {
        self.times.truncate(n);
        self.sockets.truncate(n);
        for (_, d) in &mut self.drivers {
            d.truncate(n);
        }
    }
}

pub(super) fn cumulative_at(series: &Series, tl: &Timeline, t: Ts) -> f64 {
    match tl.index(t) {
        None => 0.0,
        Some(i) => series.0.iter().take(i + 1).map(|&v| f64::from(v)).sum(),
    }
}

/// Cumulative series values at sorted instants, in one pass.
pub(super) fn running(series: &Series, tl: &Timeline, times: &[Ts]) -> Vec<f64> {
    let mut out = Vec::with_capacity(times.len());
    let (mut acc, mut upto) = (0.0, 0usize);
    for &t in times {
        let Some(i) = tl.index(t) else {
            out.push(0.0);
            continue;
        };
        while upto <= i && upto < series.0.len() {
            acc += f64::from(series.0[upto]);
            upto += 1;
        }
        out.push(acc);
    }
    out
}

/// Growth statistics of a socket curve.
#[derive(Clone, Copy, Debug)]
pub(super) struct Growth {
    pub(super) start: f64,
    pub(super) end: f64,
    pub(super) max: f64,
    pub(super) largest_step: f64,
}

pub(super) fn growth(s: &[f64]) -> Growth {
    let k = (s.len() / 10).clamp(1, 5);
    let head = s[..k].iter().sum::<f64>() / k as f64;
    let tail = s[s.len() - k..].iter().sum::<f64>() / k as f64;
    let max = s.iter().copied().fold(f64::MIN, f64::max);
    let largest_step = s.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    Growth { start: head, end: tail, max, largest_step }
}

pub(super) fn diffs(v: &[f64]) -> Vec<f64> {
    v.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Step correlations within this of each other are a tie, settled by the level fit.
pub(super) const DRIVER_TIE: f64 = 0.05;
/// Step correlations below this say nothing (arrivals and increments do not line up).
pub(super) const DRIVER_MIN_STEP: f64 = 0.2;

/// Whether a candidate driver scored `(step correlation, level r²)` beats the best so far.
pub(super) fn beats(cand: (f64, f64), best: (f64, f64)) -> bool {
    let step = |s: f64| if s > DRIVER_MIN_STEP { s } else { 0.0 };
    let (c, b) = (step(cand.0), step(best.0));
    c > b + DRIVER_TIE || ((c - b).abs() <= DRIVER_TIE && cand.1 > best.1)
}

/// Picks the driver whose arrivals line up with the socket increments; ties go to the level fit.
pub(super) fn pick_driver(c: &Curves) -> Option<(Kind, Fit, f64)> {
    let ds = diffs(&c.sockets);
    let mut best: Option<((f64, f64), Kind, Fit, f64)> = None;
    for (k, x) in &c.drivers {
        let Some(fit) = stats::ols(x, &c.sockets) else { continue };
        if fit.slope <= 0.0 {
            continue;
        }
        let score = (stats::pearson(&diffs(x), &ds), fit.r2);
        if best.as_ref().is_none_or(|b| beats(score, b.0)) {
            best = Some((score, *k, fit, stats::spearman(x, &c.sockets)));
        }
    }
    best.map(|(_, k, f, rho)| (k, f, rho))
}

/// A leak's socket curve must grow by at least this many sockets …
pub(super) const MIN_GROWTH: f64 = 3.0;
/// … by at least one socket per hundred driver events (below that a restart comes first) …
pub(super) const MIN_SLOPE: f64 = 0.01;
/// … with this rank correlation for `leak`, and this for `suspicious` …
pub(super) const LEAK_RHO: f64 = 0.9;
pub(super) const SUSPICIOUS_RHO: f64 = 0.6;
/// … in no step larger than this share of the growth (steady, not one burst) …
pub(super) const MAX_STEP_SHARE: f64 = 0.5;
/// … keeping at least this share of its peak (not released again) …
pub(super) const MIN_RETAINED: f64 = 0.5;
/// … over at least this many driver events.
pub(super) const MIN_EVENTS: u64 = 5;

/// The decision on one socket curve against its driver.
pub(super) fn decide_growth(s: &[f64], fit: &Fit, rho: f64, events: u64) -> Verdict {
    if s.len() < 5 {
        return Verdict::Ok;
    }
    let g = growth(s);
    let grew = g.end - g.start;
    let (lo, _) = fit.ci95();
    let significant = grew >= MIN_GROWTH && fit.slope >= MIN_SLOPE && lo > 0.0;
    let steady = g.largest_step <= MAX_STEP_SHARE * grew.max(1.0);
    let retained = grew >= MIN_RETAINED * (g.max - g.start);
    if significant && rho >= LEAK_RHO && steady && retained && events >= MIN_EVENTS {
        Verdict::Leak
    } else if significant && rho >= SUSPICIOUS_RHO && retained {
        Verdict::Suspicious
    } else {
        Verdict::Ok
    }
}

/// The growth rules above on one socket curve against a cumulative event count (`probe` uses
/// them per shape, so both commands judge a curve the same way): the verdict, the fit (its slope
/// is sockets kept per event) and Spearman's ρ. No fit when the events have no spread.
pub fn judge_growth(events: &[f64], sockets: &[f64], n_events: u64) -> (Verdict, Option<Fit>, f64) {
    match stats::ols(events, sockets) {
        Some(fit) => {
            let rho = stats::spearman(events, sockets);
            (decide_growth(sockets, &fit, rho, n_events), Some(fit), rho)
        }
        None => (Verdict::Ok, None, 0.0),
    }
}

pub(super) fn spark(values: &[(Ts, f64)], from: Ts, to: Ts, n: usize) -> Vec<f64> {
    if values.is_empty() || to <= from {
        return Vec::new();
    }
    (0..n)
        .map(|i| {
            let t = from.saturating_add((crate::decode::secs(from, to) * 1e9 * (i as f64 + 1.0) / n as f64) as Ts);
            let k = values.partition_point(|(vt, _)| *vt <= t);
            if k == 0 {
                values[0].1
            } else {
                values[k - 1].1
            }
        })
        .collect()
}

/// Events per second over the span in which the kind was arriving.
pub(super) fn active_rate(events: &Series, tl: &Timeline, count: u64) -> f64 {
    let first = events.0.iter().position(|&v| v > 0);
    let last = events.0.iter().rposition(|&v| v > 0);
    match (first, last) {
        (Some(a), Some(b)) if b > a && count > 1 => (count - 1) as f64 / ((b - a) as f64 * tl.width as f64 / 1e9),
        _ => 0.0,
    }
}
