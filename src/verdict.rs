//! Verdict: for each backend, does its socket count grow with the number of some kind of
//! connection — a probe kind, or traffic by how it ended — steadily and significantly? If so, how
//! many sockets are kept per such connection, how fast they arrive, and when the limit is reached.
//!
//! The socket count comes from the backend host's samples when there are any (`sockets_source:
//! host`), else from the wire: the connections the backend visibly still holds. The driver is the
//! connection kind whose arrivals line up with the socket increments (so a server hit by plain and
//! agent checks is tied to the agent checks only), and the slope against that driver's cumulative
//! count is "sockets kept per driver event". Decisions are pure functions of the aggregates.

use crate::backend::{Backend, Backends, Series, Timeline};
use crate::classify::{self, Ending, Kind, Shape};
use crate::decode::Ts;
use crate::render::endpoint;
use crate::sockets::{HostSamples, Sample};
use crate::stats::{self, Fit};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// How bad a backend looks. Ordered by severity for sorting (worst last).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Ok,
    Unknown,
    Suspicious,
    Leak,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Unknown => "unknown",
            Verdict::Suspicious => "suspicious",
            Verdict::Leak => "leak",
        }
    }
    /// The monitoring convention: 0 ok, 1 suspicious, 2 leak, 3 unknown.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Ok => 0,
            Verdict::Suspicious => 1,
            Verdict::Leak => 2,
            Verdict::Unknown => 3,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketsSource {
    Host,
    Wire,
}

impl SocketsSource {
    pub fn name(self) -> &'static str {
        match self {
            SocketsSource::Host => "host",
            SocketsSource::Wire => "wire",
        }
    }
}

/// Knobs of the judgement.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// The socket (or fd) limit, when known from outside.
    pub limit: Option<u64>,
    /// Backends with fewer connections are left out of the report.
    pub min_conns: u64,
}

/// The connection kind the socket growth follows, and how closely.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Driver {
    pub kind: Kind,
    pub per_event: f64,
    /// Sockets at zero driver events, from the same fit (for drawing the line).
    pub intercept: f64,
    pub ci95: (f64, f64),
    pub rho: f64,
    pub r2: f64,
    pub events: u64,
    pub rate_per_s: f64,
}

impl Driver {
    fn new(kind: Kind, fit: &Fit, rho: f64, events: u64, rate_per_s: f64) -> Driver {
        Driver {
            kind,
            per_event: fit.slope,
            intercept: fit.intercept,
            ci95: fit.ci95(),
            rho,
            r2: fit.r2,
            events,
            rate_per_s,
        }
    }
}

/// One source of probes against a backend.
#[derive(Clone, Debug, PartialEq)]
pub struct Prober {
    pub src: IpAddr,
    pub kind: Kind,
    pub count: u64,
    pub rate_per_s: f64,
    pub interval_s: Option<f64>,
    pub jitter_s: Option<f64>,
    pub request: Option<String>,
    pub statuses: Vec<(u16, u64)>,
    pub response_time_s: Option<f64>,
}

/// The backend stopped answering for good before the capture ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stopped {
    pub at: Ts,
    pub probes_before: u64,
    pub unanswered_since: u64,
}

/// Everything said about one backend.
#[derive(Clone, Debug)]
pub struct BackendReport {
    pub ip: IpAddr,
    pub port: u16,
    pub verdict: Verdict,
    pub conns: u64,
    pub probes: u64,
    pub kinds: Vec<(Kind, u64)>,
    pub driver: Option<Driver>,
    pub sockets_source: SocketsSource,
    pub sockets_start: Option<f64>,
    pub sockets_now: Option<f64>,
    pub hidden_now: Option<u64>,
    pub close_wait_now: u64,
    pub limit: Option<u64>,
    pub exhaustion_eta_s: Option<f64>,
    pub probers: Vec<Prober>,
    pub stopped: Option<Stopped>,
    pub evidence: Vec<String>,
    pub remedies: Vec<String>,
    /// Sockets and cumulative probes at evenly spaced times, for the sparkline.
    pub spark_sockets: Vec<f64>,
    pub spark_probes: Vec<f64>,
    /// The socket count against time and against the driver's cumulative count (or all probes
    /// when there is no driver), at most a few hundred points, for plots.
    pub curve: Vec<CurvePoint>,
}

/// One point of a backend's socket curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CurvePoint {
    pub ts: Ts,
    pub sockets: f64,
    /// Cumulative driver events (or probes) up to `ts`.
    pub events: f64,
}

impl BackendReport {
    pub fn name(&self) -> String {
        endpoint(self.ip, self.port)
    }
    pub fn probe_kinds(&self) -> impl Iterator<Item = (Kind, u64)> + '_ {
        self.kinds.iter().copied().filter(|(k, _)| k.is_probe())
    }
}

/// The whole report: overall verdict (the worst backend's) and backends worst first.
#[derive(Clone, Debug)]
pub struct Report {
    pub verdict: Verdict,
    pub backends: Vec<BackendReport>,
    /// Backends left out for having too few connections.
    pub minor_backends: usize,
    /// Their connections, together.
    pub minor_conns: u64,
    /// The `--min-conns` they fell short of.
    pub min_conns: u64,
}

/// Time to exhaustion in seconds: (limit − in use) / (kept per event × events per second).
/// The incident's arithmetic: 4000 sockets, one probe every 5 s, one kept per probe → 20 000 s.
pub fn time_to_exhaustion(limit: f64, in_use: f64, per_event: f64, events_per_s: f64) -> Option<f64> {
    let rate = per_event * events_per_s;
    if rate.is_nan() || rate <= 0.0 || !limit.is_finite() {
        return None;
    }
    Some(((limit - in_use) / rate).max(0.0))
}

/// Human duration: 5h33m, 2m58s, 41s.
pub fn human_duration(s: f64) -> String {
    if !s.is_finite() {
        return "never".into();
    }
    let s = s.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=172_799 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

/// Per-kind aggregates of one backend, after each group's kind is settled.
#[derive(Default)]
struct KindAgg {
    count: u64,
    /// Connections the server accepted that then ended in a client reset.
    resets_after_accept: u64,
    events: Series,
    /// CLOSE_WAIT sockets over time (the wire-visible leak).
    abandoned: Series,
    close_wait_now: u64,
}

fn settle(b: &Backend) -> (BTreeMap<Kind, KindAgg>, Vec<Prober>) {
    let mut kinds: BTreeMap<Kind, KindAgg> = BTreeMap::new();
    let mut probers = Vec::new();
    for g in &b.groups {
        // The group's rhythm (a sort of up to 512 start times) is the same for all its endings.
        let r = classify::rhythm(&g.starts.sorted());
        let kind = |ending: Ending| classify::decide(g.shape, ending, &g.votes, r);
        for (i, ending) in Ending::ALL.iter().enumerate() {
            if g.endings[i] == 0 {
                continue;
            }
            let k = kind(*ending);
            let a = kinds.entry(k).or_default();
            a.count += g.endings[i];
            if *ending == Ending::Rst && !matches!(g.shape, Shape::HalfOpenRst | Shape::Unanswered | Shape::Refused) {
                a.resets_after_accept += g.endings[i];
            }
            a.events.add_from(&g.events[i]);
            a.abandoned.add_from(&g.abandoned[i]);
            a.close_wait_now += g.close_wait_now[i];
        }
        let k = kind(g.main_ending());
        if k.is_probe() {
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

/// A socket curve and driver curves sampled at the same instants.
struct Curves {
    times: Vec<Ts>,
    sockets: Vec<f64>,
    /// Cumulative events per candidate kind at those instants.
    drivers: Vec<(Kind, Vec<f64>)>,
}

impl Curves {
    fn truncate(&mut self, n: usize) {
        self.times.truncate(n);
        self.sockets.truncate(n);
        for (_, d) in &mut self.drivers {
            d.truncate(n);
        }
    }
}

fn cumulative_at(series: &Series, tl: &Timeline, t: Ts) -> f64 {
    match tl.index(t) {
        None => 0.0,
        Some(i) => series.0.iter().take(i + 1).map(|&v| f64::from(v)).sum(),
    }
}

/// Candidate drivers: kinds that can leave a socket on the server.
fn candidates(kinds: &BTreeMap<Kind, KindAgg>) -> Vec<Kind> {
    kinds
        .iter()
        .filter(|(k, a)| a.count >= 3 && !matches!(k, Kind::Refused | Kind::Unanswered))
        .map(|(k, _)| *k)
        .collect()
}

fn host_curves(samples: &[Sample], tl: &Timeline, kinds: &BTreeMap<Kind, KindAgg>) -> Curves {
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

/// Cumulative series values at sorted instants, in one pass.
fn running(series: &Series, tl: &Timeline, times: &[Ts]) -> Vec<f64> {
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
struct Growth {
    start: f64,
    end: f64,
    max: f64,
    largest_step: f64,
}

fn growth(s: &[f64]) -> Growth {
    let k = (s.len() / 10).clamp(1, 5);
    let head = s[..k].iter().sum::<f64>() / k as f64;
    let tail = s[s.len() - k..].iter().sum::<f64>() / k as f64;
    let max = s.iter().copied().fold(f64::MIN, f64::max);
    let largest_step = s.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    Growth { start: head, end: tail, max, largest_step }
}

fn diffs(v: &[f64]) -> Vec<f64> {
    v.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Picks the driver whose arrivals line up with the socket increments; ties go to the level fit.
fn pick_driver(c: &Curves) -> Option<(Kind, Fit, f64)> {
    let ds = diffs(&c.sockets);
    let mut best: Option<(f64, f64, Kind, Fit, f64)> = None;
    for (k, x) in &c.drivers {
        let Some(fit) = stats::ols(x, &c.sockets) else { continue };
        if fit.slope <= 0.0 {
            continue;
        }
        let step = stats::pearson(&diffs(x), &ds);
        let rho = stats::spearman(x, &c.sockets);
        let key = (if step > 0.2 { step } else { 0.0 }, fit.r2);
        if best.as_ref().is_none_or(|b| key.0 > b.0 + 0.05 || ((key.0 - b.0).abs() <= 0.05 && key.1 > b.1)) {
            best = Some((key.0, key.1, *k, fit, rho));
        }
    }
    best.map(|(_, _, k, f, rho)| (k, f, rho))
}

/// The decision on one socket curve against its driver.
fn decide_growth(s: &[f64], fit: &Fit, rho: f64, events: u64) -> Verdict {
    if s.len() < 5 {
        return Verdict::Ok;
    }
    let g = growth(s);
    let grew = g.end - g.start;
    let (lo, _) = fit.ci95();
    let steady = g.largest_step <= 0.5 * grew.max(1.0);
    let retained = g.end - g.start >= 0.5 * (g.max - g.start);
    // Below one socket per hundred events nothing will run out before a restart does.
    if grew >= 3.0 && fit.slope >= 0.01 && lo > 0.0 && rho >= 0.9 && steady && retained && events >= 5 {
        Verdict::Leak
    } else if grew >= 3.0 && fit.slope >= 0.01 && lo > 0.0 && rho >= 0.6 && retained {
        Verdict::Suspicious
    } else {
        Verdict::Ok
    }
}

fn spark(values: &[(Ts, f64)], from: Ts, to: Ts, n: usize) -> Vec<f64> {
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

fn clock(t: Ts) -> String {
    chrono::DateTime::from_timestamp(t.div_euclid(1_000_000_000), t.rem_euclid(1_000_000_000) as u32)
        .map(|d| d.format("%H:%M:%S%.3f UTC").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// Judges every backend.
pub fn judge(all: &Backends, host: Option<&HostSamples>, opts: &Options) -> Report {
    let Some(tl) = all.timeline else {
        return Report {
            verdict: Verdict::Unknown,
            backends: Vec::new(),
            minor_backends: 0,
            minor_conns: 0,
            min_conns: opts.min_conns,
        };
    };
    let mut reports = Vec::new();
    let (mut minor, mut minor_conns) = (0, 0);
    for b in all.map.values() {
        let samples = host.and_then(|h| h.for_backend(b.ip, b.port));
        if b.conns < opts.min_conns.max(1) && samples.is_none() {
            minor += 1;
            minor_conns += b.conns;
            continue;
        }
        let mut r = judge_backend(b, &tl, samples, opts);
        if let Some(h) = host {
            if h.port_only(b.ip, b.port) {
                let mut ips: Vec<IpAddr> = all.map.keys().filter(|(_, p)| *p == b.port).map(|(ip, _)| *ip).collect();
                if ips.len() > 1 {
                    ips.sort();
                    let list = ips.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
                    r.evidence.push(format!(
                        "the host samples name only the port (:{}) and were applied to every backend on it ({list}); if these are different hosts, label each host's samples with its address (`hcleak sample --addr IP`)",
                        b.port
                    ));
                }
            }
        }
        reports.push(r);
    }
    reports.sort_by(|a, b| b.verdict.cmp(&a.verdict).then(b.probes.cmp(&a.probes)).then(a.name().cmp(&b.name())));
    let verdict = reports.iter().map(|r| r.verdict).max().unwrap_or(Verdict::Unknown);
    Report { verdict, backends: reports, minor_backends: minor, minor_conns, min_conns: opts.min_conns }
}

fn judge_backend(b: &Backend, tl: &Timeline, samples: Option<&[Sample]>, opts: &Options) -> BackendReport {
    let (kinds, probers) = settle(b);
    let probes: u64 = kinds.iter().filter(|(k, _)| k.is_probe()).map(|(_, a)| a.count).sum();
    let window_from = b.first;
    let window_to = b.last.max(b.first.saturating_add(1));
    let span_s = crate::decode::secs(window_from, window_to).max(1e-3);
    let name = endpoint(b.ip, b.port);
    let mut evidence = Vec::new();
    let mut remedies = Vec::new();

    // Host samples inside the capture's window (a little slack for clock steps).
    let slack = 2 * tl.width;
    let samples: Vec<Sample> = samples
        .map(|v| {
            v.iter().filter(|s| s.ts >= tl.origin - slack && s.ts <= tl.end_of(tl.buckets) + slack).copied().collect()
        })
        .unwrap_or_default();
    let source = if samples.len() >= 3 { SocketsSource::Host } else { SocketsSource::Wire };

    // Cumulative probes for the sparkline.
    let mut all_probe_events = Series::default();
    for (k, a) in &kinds {
        if k.is_probe() {
            all_probe_events.add_from(&a.events);
        }
    }

    // The backend stopped answering and never recovered.
    let stopped = stopped(b, tl, &all_probe_events);

    let mut verdict = Verdict::Ok;
    let mut driver: Option<Driver> = None;
    let (sockets_start, sockets_now, spark_sockets, spark_times);
    let close_wait_now: u64 = kinds.values().map(|a| a.close_wait_now).sum();
    let mut hidden_now = None;
    let mut limit = opts.limit;

    match source {
        SocketsSource::Host => {
            let mut c = host_curves(&samples, tl, &kinds);
            if stopped.is_some() {
                // Exhausted: past the plateau the server cannot keep more, so fit the growth phase.
                let max = c.sockets.iter().copied().fold(f64::MIN, f64::max);
                let cut = c.sockets.iter().position(|&v| v >= max).map_or(c.sockets.len(), |i| i + 1).max(5);
                if cut < c.sockets.len() && max - c.sockets[0] >= 3.0 {
                    c.truncate(cut);
                    evidence.push(format!(
                        "sockets stopped growing at {:.0} (the server could not take more): the fit covers the {} samples before that",
                        max, cut
                    ));
                }
            }
            let last = samples.last().expect("3+ samples");
            hidden_now = last.hidden;
            limit = limit.or(samples.iter().rev().find_map(|s| s.fd_limit));
            let g = growth(&c.sockets);
            sockets_start = Some(g.start);
            sockets_now = Some(last.sockets as f64);
            spark_times = (samples[0].ts, last.ts);
            spark_sockets = c.times.iter().copied().zip(c.sockets.iter().copied()).collect::<Vec<_>>();
            if let Some((k, fit, rho)) = pick_driver(&c) {
                let events = kinds[&k].count;
                let v = decide_growth(&c.sockets, &fit, rho, events);
                if v > Verdict::Ok {
                    verdict = v;
                    driver = Some(Driver::new(k, &fit, rho, events, active_rate(&kinds[&k].events, tl, events)));
                }
            }
            let grew = g.end - g.start;
            match &driver {
                Some(d) => evidence.push(format!(
                    "{} sockets grew from {:.0} to {:.0} over {:.0} s while {} {} arrived: {:.2} socket kept per {} (95% CI {:.2}–{:.2}), Spearman ρ {:.2} over {} host samples",
                    name, g.start, last.sockets, span_s, d.events, plural_kind(d.kind), d.per_event, d.kind.name(), d.ci95.0, d.ci95.1, d.rho, samples.len()
                )),
                None => evidence.push(format!(
                    "host samples: sockets {} ({:.0} → {}, {:+.0}) while {} probes arrived over {:.0} s",
                    if grew.abs() < 2.0 { "flat" } else { "changed without following any probe or traffic kind" },
                    g.start, last.sockets, grew, probes, span_s
                )),
            }
            if let Some(h) = last.hidden.filter(|h| *h > 0) {
                evidence.push(format!(
                    "{h} of its socket fds are in no kernel TCP table: accepted, reset by the peer, never closed (lsof: \"can't identify protocol\")"
                ));
            }
            if let Some(cw) = last.close_wait.filter(|c| *c > 0) {
                evidence.push(format!("{cw} sockets in CLOSE_WAIT on the host: the peer closed, the server never did"));
            }
            let q: Vec<u64> = samples.iter().filter_map(|s| s.accept_queue).collect();
            if let (Some(&qn), Some(ovf)) = (q.last(), overflow_growth(&samples)) {
                if qn > 0 && ovf > 0 {
                    evidence.push(format!(
                        "accept queue holds {qn} connections nobody accepts and ListenOverflows rose by {ovf}: the kernel is dropping new handshakes"
                    ));
                }
            }
        }
        SocketsSource::Wire => {
            // What the backend visibly holds (open and half-closed connections), for the curve.
            let points: Vec<usize> = (tl.index(window_from).unwrap_or(0)..tl.buckets).collect();
            let times: Vec<Ts> = points.iter().map(|&i| tl.end_of(i)).collect();
            let mut held_all = Series::default();
            for g in &b.groups {
                held_all.add_from(&g.held);
            }
            let total = running(&held_all, tl, &times);
            // The driver: the kind whose connections the server abandons in CLOSE_WAIT. Connections
            // both sides keep open are not a leak, however many there are.
            let mut best: Option<(f64, Kind, Vec<f64>, Vec<f64>)> = None;
            for k in candidates(&kinds) {
                let a = &kinds[&k];
                let held = running(&a.abandoned, tl, &times);
                let grew = held.last().copied().unwrap_or(0.0) - held.first().copied().unwrap_or(0.0);
                if grew > 0.0 && best.as_ref().is_none_or(|b| grew > b.0) {
                    best = Some((grew, k, held, running(&a.events, tl, &times)));
                }
            }
            sockets_start = total.first().copied();
            sockets_now = Some(b.groups.iter().map(|g| g.held_now as f64).sum());
            spark_times = (window_from, window_to);
            spark_sockets = times.iter().copied().zip(total.iter().copied()).collect();
            if let Some((_, k, held, cum)) = best {
                // Fit over the stretch where the driver was active.
                let from = cum.iter().position(|&v| v > 0.0).unwrap_or(0);
                if let Some(fit) = stats::ols(&cum[from..], &held[from..]) {
                    let rho = stats::spearman(&cum[from..], &held[from..]);
                    let events = kinds[&k].count;
                    let v = decide_growth(&held[from..], &fit, rho, events);
                    if v > Verdict::Ok {
                        verdict = v;
                        driver = Some(Driver::new(k, &fit, rho, events, active_rate(&kinds[&k].events, tl, events)));
                        evidence.push(format!(
                            "on the wire, {} never closed {} of its {} {} after the client's FIN ({:.2} per {}, 95% CI {:.2}–{:.2}, Spearman ρ {:.2})",
                            name, kinds[&k].close_wait_now, events, plural_kind(k), fit.slope, k.name(), fit.ci95().0, fit.ci95().1, rho
                        ));
                    }
                }
            }
            if close_wait_now > 0 {
                evidence.push(format!(
                    "{close_wait_now} connections are half-closed: the client sent FIN, the server ACKed it and never closed (CLOSE_WAIT on the server)"
                ));
            }
            if driver.is_none() {
                // Probes that end in a reset after accept always matter; reset-ended traffic only
                // when it is a real share (clients reset now and then everywhere).
                let hidden_kinds: Vec<(Kind, u64)> = kinds
                    .iter()
                    .filter(|(k, a)| {
                        a.resets_after_accept >= 3 && (k.is_probe() || a.resets_after_accept * 20 >= b.conns)
                    })
                    .map(|(k, a)| (*k, a.resets_after_accept))
                    .collect();
                if !hidden_kinds.is_empty() {
                    verdict = Verdict::Unknown;
                    let what =
                        hidden_kinds.iter().map(|(k, n)| format!("{n} {}", k.name())).collect::<Vec<_>>().join(", ");
                    evidence.push(format!(
                        "connections here end in a reset after the server accepted them ({what}); a socket leaked after a reset is invisible on the wire — a leaking and a healthy server give identical captures"
                    ));
                    remedies.push(format!(
                        "to decide, measure the host: run `hcleak capture -i any port {}` on the backend host, or `hcleak sample --port {} -o samples.csv` there while capturing and then `hcleak analyze dump.pcap --sockets samples.csv`",
                        b.port, b.port
                    ));
                } else if kinds.get(&Kind::HalfOpenRst).is_some_and(|a| a.count >= 3) {
                    evidence.push(
                        "half-open probes (SYN, SYN-ACK, RST) never reach accept() on Linux, so they cannot leak in the application there; on FreeBSD they can — confirm with --sockets".into(),
                    );
                }
            }
        }
    }

    if let Some(s) = &stopped {
        evidence.push(format!(
            "stopped answering at {} after {} probes: {} connection attempts since got no answer (SYNs dropped or requests left without a response) — its accept queue is full",
            clock(s.at), s.probes_before, s.unanswered_since
        ));
        let reached_accept = kinds.iter().any(|(k, a)| {
            a.count >= 3 && (a.resets_after_accept > 0 || matches!(k, Kind::ConnectFin | Kind::HttpCheck))
        });
        let new = if reached_accept { Verdict::Leak } else { Verdict::Suspicious };
        if new > verdict || verdict == Verdict::Unknown {
            verdict = new;
        }
        if reached_accept && driver.is_none() {
            remedies.push(
                "a server that stops accepting after a run of probes that reached accept() has run out of acceptors or sockets: on Bandit/Thousand Island upgrade Thousand Island to ≥ 1.3.12; restart buys time only".into(),
            );
        }
    }
    if let Some(since) = refusing(b) {
        evidence.push(format!("refusing connections since {} (nothing listening on the port)", clock(since)));
        if verdict == Verdict::Ok {
            verdict = Verdict::Suspicious;
        }
    }
    if b.synack_retransmits > 0 {
        evidence.push(format!(
            "{} connections had their SYN-ACK retransmitted (the server's handshake ACKs are being dropped)",
            b.synack_retransmits
        ));
    }

    // Projection.
    let mut eta = stopped.map(|_| 0.0);
    if let (None, Some(d), Some(now)) = (&stopped, &driver, sockets_now) {
        match limit {
            Some(l) => {
                eta = time_to_exhaustion(l as f64, now, d.per_event, d.rate_per_s);
                if let Some(e) = eta {
                    evidence.push(format!(
                        "at {:.2} {} per second and {:.2} socket kept per {}, the limit of {} ({:.0} in use) is reached in {}",
                        d.rate_per_s, plural_kind(d.kind), d.per_event, d.kind.name(), l, now, human_duration(e)
                    ));
                }
            }
            None => evidence.push(format!(
                "it gains {:.2} sockets per minute; pass --limit N (the server's socket or fd limit, see /proc/PID/limits) for a time to exhaustion",
                d.per_event * d.rate_per_s * 60.0
            )),
        }
    }

    if let Some(d) = &driver {
        remedies.extend(remedies_for(d.kind));
    }
    if verdict >= Verdict::Suspicious {
        remedies.push(confirm_commands(b.port));
    }

    let probe_points: Vec<(Ts, f64)> = {
        let (a, b) = (i128::from(spark_times.0), i128::from(spark_times.1));
        let times: Vec<Ts> = (0..16).map(|i| (a + (b - a) * (i + 1) / 16) as Ts).collect();
        let cum = running(&all_probe_events, tl, &times);
        times.into_iter().zip(cum).collect()
    };
    let curve = {
        let x = driver.map_or(&all_probe_events, |d| &kinds[&d.kind].events);
        let step = spark_sockets.len().div_ceil(400).max(1);
        let pts: Vec<(Ts, f64)> = spark_sockets.iter().copied().step_by(step).collect();
        let times: Vec<Ts> = pts.iter().map(|p| p.0).collect();
        let cum = running(x, tl, &times);
        pts.iter().zip(cum).map(|(p, c)| CurvePoint { ts: p.0, sockets: p.1, events: c }).collect()
    };
    let mut kinds_out: Vec<(Kind, u64)> = kinds.iter().map(|(k, a)| (*k, a.count)).collect();
    kinds_out.sort();
    BackendReport {
        ip: b.ip,
        port: b.port,
        verdict,
        conns: b.conns,
        probes,
        kinds: kinds_out,
        driver,
        sockets_source: source,
        sockets_start,
        sockets_now,
        hidden_now,
        close_wait_now,
        limit,
        exhaustion_eta_s: eta,
        probers,
        stopped,
        evidence,
        remedies,
        spark_sockets: spark(&spark_sockets, spark_times.0, spark_times.1, 16),
        spark_probes: probe_points.iter().map(|p| p.1).collect(),
        curve,
    }
}

/// Events per second over the span in which the kind was arriving.
fn active_rate(events: &Series, tl: &Timeline, count: u64) -> f64 {
    let first = events.0.iter().position(|&v| v > 0);
    let last = events.0.iter().rposition(|&v| v > 0);
    match (first, last) {
        (Some(a), Some(b)) if b > a && count > 1 => (count - 1) as f64 / ((b - a) as f64 * tl.width as f64 / 1e9),
        _ => 0.0,
    }
}

fn overflow_growth(samples: &[Sample]) -> Option<u64> {
    let first = samples.iter().find_map(|s| s.listen_overflows)?;
    let last = samples.iter().rev().find_map(|s| s.listen_overflows)?;
    Some(last.saturating_sub(first))
}

fn plural_kind(k: Kind) -> String {
    match k {
        Kind::Traffic(_) => format!("{} connections", k.name()),
        _ => format!("{} probes", k.name()),
    }
}

/// Three or more connections nobody answered after the last one that was answered.
fn stopped(b: &Backend, tl: &Timeline, probe_events: &Series) -> Option<Stopped> {
    let answered = b.last_answered?;
    let after: Vec<Ts> = b.failed.sorted().into_iter().filter(|t| *t > answered).collect();
    if after.len() < 3 {
        return None;
    }
    let at = after[0];
    let before =
        tl.index(at).map_or(0.0, |i| if i == 0 { 0.0 } else { cumulative_at(probe_events, tl, tl.end_of(i - 1) - 1) });
    Some(Stopped { at, probes_before: before as u64, unanswered_since: after.len() as u64 })
}

/// Still refusing at the end: three or more refusals after the last answered connection.
fn refusing(b: &Backend) -> Option<Ts> {
    let after: Vec<Ts> = b.refused.sorted().into_iter().filter(|t| b.last_answered.is_none_or(|a| *t > a)).collect();
    (after.len() >= 3 && b.last_answered.is_some()).then(|| after[0])
}

fn remedies_for(k: Kind) -> Vec<String> {
    match k {
        Kind::HandshakeRst | Kind::DataRst => vec![
            "the server loses a socket each time a check it accepted is reset: on Bandit/Phoenix upgrade Thousand Island to ≥ 1.3.12 (earlier versions ended an acceptor on the `einval` a reset socket returns)".into(),
            "workaround in HAProxy: `option httpchk GET /health` (with `http-check send … hdr Connection close`) so the check is an HTTP exchange that closes cleanly; raising maxconn only delays the outage".into(),
        ],
        Kind::HttpCheck => vec![
            "the HTTP check keeps the connection alive and HAProxy resets it after the response: add `hdr Connection close` to `http-check send` (or use HTTP/1.0) so the server closes it, and fix the server to close sockets on ECONNRESET".into(),
        ],
        Kind::ConnectFin => vec![
            "the server never closes a connection after the client's FIN (read() returned 0): close the socket on EOF; until then every probe leaves a CLOSE_WAIT socket".into(),
        ],
        Kind::HalfOpenRst => vec![
            "half-open probes reach accept() only on some kernels (FreeBSD): upgrade the server's socket library (Thousand Island ≥ 1.3.12) or switch to `option httpchk`".into(),
        ],
        Kind::Traffic(Ending::Rst) => vec![
            "the leak follows traffic that ends in a reset, not the probes: HAProxy resets keep-alive server connections after the response, so the server must close sockets on ECONNRESET (Thousand Island ≥ 1.3.12); changing the health check will not help".into(),
        ],
        Kind::Traffic(Ending::Fin) => vec![
            "sockets follow traffic closed by the client: the server does not close its side after the client's FIN".into(),
        ],
        Kind::Traffic(_) => vec!["sockets follow ordinary traffic: look for connections the server keeps open without need".into()],
        Kind::Refused | Kind::Unanswered => Vec::new(),
    }
}

fn confirm_commands(port: u16) -> String {
    format!(
        "confirm on the host: `ss -tanp state close-wait '( sport = :{port} )'` (CLOSE_WAIT), `ls -l /proc/PID/fd | grep -c socket` and `lsof -nP -p PID | grep -c \"can't identify protocol\"` (leaked reset sockets), `ss -lnt 'sport = :{port}'` (Recv-Q at Send-Q+1: accept queue full), `nstat -az TcpExtListenOverflows`; or `hcleak sample --port {port}`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
