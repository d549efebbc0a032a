//! The steps of one backend's judgement: settle its groups into kinds and probers, then the
//! socket curve from host samples or from the wire, the stall check, and the projection.

use super::growth::*;
use super::{time_to_exhaustion, Driver, Finding, Prober, Stopped, Verdict};
use crate::backend::{Backend, Group, Series, Timeline};
use crate::classify::{self, Ending, Kind, Rhythm, Shape};
use crate::decode::Ts;
use crate::sockets::Sample;
use crate::stats;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Per-kind aggregates of one backend, after each group's kind is settled.
#[derive(Default)]
pub(super) struct KindAgg {
    pub(super) count: u64,
    /// Connections the server accepted that then ended in a client reset.
    pub(super) resets_after_accept: u64,
    pub(super) events: Series,
    /// CLOSE_WAIT sockets over time (the wire-visible leak).
    pub(super) abandoned: Series,
    pub(super) close_wait_now: u64,
}

/// Candidate drivers: kinds that can leave a socket on the server.
pub(super) fn candidates(kinds: &BTreeMap<Kind, KindAgg>) -> Vec<Kind> {
    kinds
        .iter()
        .filter(|(k, a)| a.count >= 3 && !matches!(k, Kind::Refused | Kind::Unanswered))
        .map(|(k, _)| *k)
        .collect()
}

pub(super) fn host_curves(samples: &[Sample], tl: &Timeline, kinds: &BTreeMap<Kind, KindAgg>) -> Curves {
    let times: Vec<Ts> = samples.iter().map(|s| s.ts).collect();
    let drivers = candidates(kinds)
        .into_iter()
        .map(|k| {
            let cum = running(&kinds[&k].events, tl, &times);
            (k, cum)
        })
        .collect();
    Curves { sockets: samples.iter().map(|s| s.sockets as f64).collect(), times, drivers }
}

pub(super) fn settle(b: &Backend) -> (BTreeMap<Kind, KindAgg>, Vec<Prober>) {
    let mut kinds: BTreeMap<Kind, KindAgg> = BTreeMap::new();
    let mut probers = Vec::new();
    // The group's rhythm (a sort of up to 512 start times) is the same for all its endings.
    let rhythms: Vec<Option<Rhythm>> = b.groups.iter().map(|g| classify::rhythm(&g.starts.sorted())).collect();
    let failed_shape = |g: &Group| matches!(g.shape, Shape::Unanswered | Shape::Refused);
    // An "other clients" bucket holds many sources: only shapes that are probes by themselves
    // count as probes there.
    let kind_of = |g: &Group, r: Option<Rhythm>, ending: Ending| match g.shape.probe_kind() {
        _ if !g.overflow => classify::decide(g.shape, ending, &g.votes, r),
        Some(k) => k,
        None => Kind::Traffic(ending),
    };
    // Sources that probe this backend: their failed SYNs are failed probes, not clients'.
    let prober_sources: Vec<IpAddr> = b
        .groups
        .iter()
        .zip(&rhythms)
        .filter(|(g, r)| !g.overflow && !failed_shape(g) && kind_of(g, **r, g.main_ending()).is_probe())
        .map(|(g, _)| g.src)
        .collect();
    for (g, &r) in b.groups.iter().zip(&rhythms) {
        let kind = |ending: Ending| {
            if failed_shape(g) {
                let prober = !g.overflow && prober_sources.contains(&g.src);
                classify::decide_failed(g.shape, r.filter(|_| !g.overflow), prober)
            } else {
                kind_of(g, r, ending)
            }
        };
        for e in &g.by_ending {
            let k = kind(e.ending);
            let a = kinds.entry(k).or_default();
            a.count += e.count;
            a.resets_after_accept += e.resets_after_accept;
            e.events.add_into(&mut a.events);
            e.abandoned.add_into(&mut a.abandoned);
            a.close_wait_now += e.close_wait_now;
        }
        let k = kind(g.main_ending());
        if k.is_probe() && !g.overflow {
            let span = crate::decode::secs(g.first, g.last);
            let mut statuses = g.statuses.clone();
            statuses.sort_by_key(|s| std::cmp::Reverse(s.1));
            probers.push(Prober {
                src: g.src,
                kind: k,
                count: g.count(),
                rate_per_s: if span > 0.0 { (g.count() - 1) as f64 / span } else { 0.0 },
                interval_s: r.map(|r| r.median_s),
                jitter_s: r.map(|r| r.jitter_s),
                request: g.request.clone(),
                statuses,
                response_time_s: (g.response_time_n > 0).then(|| g.response_time_sum_s / g.response_time_n as f64),
            });
        }
    }
    probers.sort_by(|a, b| b.count.cmp(&a.count).then(a.src.cmp(&b.src)));
    (kinds, probers)
}

/// The host's socket curve: where it started, where it is, and its points.
pub(super) struct HostCurve {
    pub(super) start: f64,
    pub(super) now: u64,
    pub(super) points: Vec<(Ts, f64)>,
}

/// Judgement of the socket curve: the verdict it supports and the driver it follows.
pub(super) struct CurveVerdict {
    pub(super) verdict: Verdict,
    pub(super) driver: Option<Driver>,
}

/// Everything one backend's steps share.
pub(super) struct Ctx<'a> {
    pub(super) b: &'a Backend,
    pub(super) tl: &'a Timeline,
    pub(super) kinds: BTreeMap<Kind, KindAgg>,
    pub(super) probes: u64,
    pub(super) span_s: f64,
}

/// Step: the socket curve from host samples, the driver it follows, and what the host shows.
pub(super) fn host_step(
    cx: &Ctx,
    samples: &[Sample],
    stopped: bool,
    evidence: &mut Vec<Finding>,
) -> (CurveVerdict, HostCurve) {
    let mut c = host_curves(samples, cx.tl, &cx.kinds);
    if stopped {
        // Exhausted: past the plateau the server cannot keep more, so fit the growth phase.
        let max = c.sockets.iter().copied().fold(f64::MIN, f64::max);
        let cut = c.sockets.iter().position(|&v| v >= max).map_or(c.sockets.len(), |i| i + 1).max(5);
        if cut < c.sockets.len() && max - c.sockets[0] >= 3.0 {
            c.truncate(cut);
            evidence.push(Finding::FitBeforePlateau { plateau: max, samples: cut });
        }
    }
    let last = samples.last().expect("3+ samples");
    let g = growth(&c.sockets);
    let mut out = CurveVerdict { verdict: Verdict::Ok, driver: None };
    if let Some((k, fit, rho)) = pick_driver(&c) {
        let events = cx.kinds[&k].count;
        let v = decide_growth(&c.sockets, &fit, rho, events);
        if v > Verdict::Ok {
            out = CurveVerdict {
                verdict: v,
                driver: Some(Driver::new(k, &fit, rho, events, active_rate(&cx.kinds[&k].events, cx.tl, events))),
            };
        }
    }
    evidence.push(match out.driver {
        Some(driver) => {
            Finding::HostGrowth { start: g.start, now: last.sockets, span_s: cx.span_s, driver, samples: samples.len() }
        }
        None => Finding::HostNoGrowth { start: g.start, now: last.sockets, probes: cx.probes, span_s: cx.span_s },
    });
    if let Some(n) = last.hidden.filter(|h| *h > 0) {
        evidence.push(Finding::HiddenSockets { n });
    }
    if let Some(n) = last.close_wait.filter(|c| *c > 0) {
        evidence.push(Finding::HostCloseWait { n });
    }
    let q: Vec<u64> = samples.iter().filter_map(|s| s.accept_queue).collect();
    if let (Some(&queue), Some(overflows)) = (q.last(), overflow_growth(samples)) {
        if queue > 0 && overflows > 0 {
            evidence.push(Finding::AcceptQueueOverflowing { queue, overflows });
        }
    }
    let points = c.times.iter().copied().zip(c.sockets.iter().copied()).collect();
    (out, HostCurve { start: g.start, now: last.sockets, points })
}

/// Step: the socket curve from the wire — what the backend visibly holds — and the kind whose
/// connections it abandons in CLOSE_WAIT; connections both sides keep open are not a leak.
pub(super) fn wire_step(
    cx: &Ctx,
    from: Ts,
    evidence: &mut Vec<Finding>,
) -> (CurveVerdict, Vec<(Ts, f64)>, Option<f64>, f64) {
    let (b, tl) = (cx.b, cx.tl);
    let points: Vec<usize> = (tl.index(from).unwrap_or(0)..tl.buckets).collect();
    let times: Vec<Ts> = points.iter().map(|&i| tl.end_of(i)).collect();
    let mut held_all = Series::default();
    for g in &b.groups {
        g.held.add_into(&mut held_all);
    }
    let total = running(&held_all, tl, &times);
    let mut best: Option<(f64, Kind, Vec<f64>, Vec<f64>)> = None;
    for k in candidates(&cx.kinds) {
        let a = &cx.kinds[&k];
        let held = running(&a.abandoned, tl, &times);
        let grew = held.last().copied().unwrap_or(0.0) - held.first().copied().unwrap_or(0.0);
        if grew > 0.0 && best.as_ref().is_none_or(|b| grew > b.0) {
            best = Some((grew, k, held, running(&a.events, tl, &times)));
        }
    }
    let mut out = CurveVerdict { verdict: Verdict::Ok, driver: None };
    if let Some((_, k, held, cum)) = best {
        // Fit over the stretch where the driver was active.
        let from = cum.iter().position(|&v| v > 0.0).unwrap_or(0);
        if let Some(fit) = stats::ols(&cum[from..], &held[from..]) {
            let rho = stats::spearman(&cum[from..], &held[from..]);
            let events = cx.kinds[&k].count;
            let v = decide_growth(&held[from..], &fit, rho, events);
            if v > Verdict::Ok {
                let driver = Driver::new(k, &fit, rho, events, active_rate(&cx.kinds[&k].events, tl, events));
                out = CurveVerdict { verdict: v, driver: Some(driver) };
                evidence.push(Finding::WireCloseWait { never_closed: cx.kinds[&k].close_wait_now, driver });
            }
        }
    }
    let close_wait_now: u64 = cx.kinds.values().map(|a| a.close_wait_now).sum();
    if close_wait_now > 0 {
        evidence.push(Finding::HalfClosed { n: close_wait_now });
    }
    if out.driver.is_none() {
        // Probes that end in a reset after accept always matter; reset-ended traffic only when it
        // is a real share (clients reset now and then everywhere).
        let hidden: Vec<(Kind, u64)> = cx
            .kinds
            .iter()
            .filter(|(k, a)| a.resets_after_accept >= 3 && (k.is_probe() || a.resets_after_accept * 20 >= b.conns))
            .map(|(k, a)| (*k, a.resets_after_accept))
            .collect();
        if !hidden.is_empty() {
            out.verdict = Verdict::Unknown;
            evidence.push(Finding::ResetsInvisible { kinds: hidden });
        } else if cx.kinds.get(&Kind::HalfOpenRst).is_some_and(|a| a.count >= 3) {
            evidence.push(Finding::HalfOpenCannotLeak);
        }
    }
    let now = b.groups.iter().map(|g| g.held_now as f64).sum();
    let pts = times.iter().copied().zip(total.iter().copied()).collect();
    (out, pts, total.first().copied(), now)
}

/// Step: did the backend stop answering for good? Judged against what each group of connections
/// normally gets (a check that never gets a reply by design is not unanswered), and overruled by
/// host samples that show an accept queue neither full nor growing.
pub(super) fn stall_check(cx: &Ctx, probe_events: &Series, samples: &[Sample]) -> Option<Finding> {
    let s = stopped(cx.b, cx.tl, probe_events)?;
    let queue_after: Vec<(u64, Option<u64>)> = samples
        .iter()
        .filter(|x| x.ts >= s.at)
        .filter_map(|x| x.accept_queue.map(|q| (q, x.listen_overflows)))
        .collect();
    if let (Some(first), Some(last)) = (queue_after.first(), queue_after.last()) {
        let overflowing = matches!((first.1, last.1), (Some(a), Some(b)) if b > a);
        if !overflowing && (last.0 == 0 || last.0 < first.0) {
            return Some(Finding::StallOverruled { at: s.at, queue: last.0 });
        }
    }
    // Requests were sent and none was ever answered, and the server never closed a connection:
    // nothing shows that it ever accepted one.
    let requests_unanswered: u64 = cx.b.groups.iter().map(|g| g.stalled_total).sum();
    let host_says_never = host_never_accepted(cx, samples);
    if host_says_never == Some(true) || (host_says_never.is_none() && !cx.b.app_spoke && requests_unanswered > 0) {
        let queue = samples.iter().rev().find_map(|x| x.accept_queue);
        return Some(Finding::NeverAccepted { at: s.at, requests_unanswered, queue });
    }
    Some(Finding::Stopped(s))
}

/// From host samples with the accept queue: a server that never accepted holds every completed
/// handshake in its queue, so the queue never falls below the handshakes completed so far (up to
/// its capacity). `None` when the samples do not say.
pub(super) fn host_never_accepted(cx: &Ctx, samples: &[Sample]) -> Option<bool> {
    let with_q: Vec<(Ts, u64)> = samples.iter().filter_map(|s| s.accept_queue.map(|q| (s.ts, q))).collect();
    if with_q.len() < 3 {
        return None;
    }
    let mut handshakes = Series::default();
    cx.b.synacked.add_into(&mut handshakes);
    let times: Vec<Ts> = with_q.iter().map(|p| p.0).collect();
    let done = running(&handshakes, cx.tl, &times);
    let cap = with_q.iter().map(|p| p.1).max().unwrap_or(0) as f64;
    if cap == 0.0 {
        return Some(false);
    }
    // One handshake of slack for a sample taken between a SYN-ACK and its queueing.
    Some(with_q.iter().zip(&done).all(|(&(_, q), &d)| q as f64 >= d.min(cap) - 1.0))
}

/// Step: the time to exhaustion, with what it rests on.
pub(super) fn projection(
    stopped: bool,
    driver: Option<&Driver>,
    now: Option<f64>,
    limit: Option<u64>,
    evidence: &mut Vec<Finding>,
) -> Option<f64> {
    if stopped {
        return Some(0.0);
    }
    let (d, now) = (driver?, now?);
    match limit {
        Some(l) => {
            let eta = time_to_exhaustion(l as f64, now, d.per_event, d.rate_per_s)?;
            evidence.push(Finding::Exhaustion { driver: *d, limit: l, in_use: now, eta_s: eta });
            Some(eta)
        }
        None => {
            evidence.push(Finding::GainPerMinute { per_minute: d.per_event * d.rate_per_s * 60.0 });
            None
        }
    }
}

pub(super) fn overflow_growth(samples: &[Sample]) -> Option<u64> {
    let first = samples.iter().find_map(|s| s.listen_overflows)?;
    let last = samples.iter().rev().find_map(|s| s.listen_overflows)?;
    Some(last.saturating_sub(first))
}

/// Three or more connections that did not get what their group normally gets, after the last
/// one that did.
pub(super) fn stopped(b: &Backend, tl: &Timeline, probe_events: &Series) -> Option<Stopped> {
    let answered = b.last_answered()?;
    let mut after: Vec<Ts> = b
        .failed
        .sorted()
        .into_iter()
        .chain(b.groups.iter().flat_map(Group::failures))
        .filter(|t| *t > answered)
        .collect();
    if after.len() < 3 {
        return None;
    }
    after.sort_unstable();
    let at = after[0];
    let before =
        tl.index(at).map_or(0.0, |i| if i == 0 { 0.0 } else { cumulative_at(probe_events, tl, tl.end_of(i - 1) - 1) });
    Some(Stopped { at, probes_before: before as u64, unanswered_since: after.len() as u64 })
}

/// Still refusing at the end: three or more refusals after the last answered connection.
pub(super) fn refusing(b: &Backend) -> Option<Ts> {
    let last = b.last_answered();
    let after: Vec<Ts> = b.refused.sorted().into_iter().filter(|t| last.is_none_or(|a| *t > a)).collect();
    (after.len() >= 3 && last.is_some()).then(|| after[0])
}
