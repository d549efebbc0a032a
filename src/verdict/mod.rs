//! Verdict: for each backend, does its socket count grow with the number of some kind of
//! connection — a probe kind, or traffic by how it ended — steadily and significantly? If so, how
//! many sockets are kept per such connection, how fast they arrive, and when the limit is reached.
//!
//! The socket count comes from the backend host's samples when there are any (`sockets_source:
//! host`), else from the wire: the connections the backend visibly still holds. The driver is the
//! connection kind whose arrivals line up with the socket increments (so a server hit by plain and
//! agent checks is tied to the agent checks only), and the slope against that driver's cumulative
//! count is "sockets kept per driver event". Decisions are pure functions of the aggregates.
//!
//! [`judge`] runs the steps in `steps` (settle each group's kind and probers, the socket curve
//! from host samples or the wire, the stall check, the projection) over the growth rule in
//! `growth`, and returns data: a [`Report`] whose evidence is [`Finding`]s and [`Remedy`]s.
//! Nothing here writes a sentence; [`crate::explain`] does.

use crate::backend::{Backend, Backends, Series, Timeline};
use crate::classify::Kind;
use crate::decode::Ts;
use crate::sockets::{BackendSpec, HostSamples, Sample};
use crate::stats::Fit;
use crate::units::endpoint;
use std::net::IpAddr;

mod findings;
mod growth;
mod steps;
#[cfg(test)]
mod tests;

pub use findings::{Finding, Remedy, Software};
pub use growth::judge_growth;
use growth::{running, spark};
use steps::*;

/// How bad a backend looks. Ordered by severity for sorting (worst last).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Ok,
    Unknown,
    Suspicious,
    Leak,
}

impl Verdict {
    pub(crate) fn name(self) -> &'static str {
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
    pub(crate) fn name(self) -> &'static str {
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
    pub(crate) rho: f64,
    pub(crate) r2: f64,
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
    pub(crate) src: IpAddr,
    pub kind: Kind,
    pub count: u64,
    pub(crate) rate_per_s: f64,
    pub interval_s: Option<f64>,
    pub(crate) jitter_s: Option<f64>,
    pub request: Option<String>,
    pub(crate) statuses: Vec<(u16, u64)>,
    pub(crate) response_time_s: Option<f64>,
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
    pub(crate) ip: IpAddr,
    pub port: u16,
    pub verdict: Verdict,
    pub(crate) conns: u64,
    pub probes: u64,
    pub kinds: Vec<(Kind, u64)>,
    pub driver: Option<Driver>,
    pub sockets_source: SocketsSource,
    pub(crate) sockets_start: Option<f64>,
    pub sockets_now: Option<f64>,
    pub(crate) hidden_now: Option<u64>,
    pub close_wait_now: u64,
    pub(crate) limit: Option<u64>,
    pub exhaustion_eta_s: Option<f64>,
    pub probers: Vec<Prober>,
    pub stopped: Option<Stopped>,
    /// Connections filed in "other clients" buckets (never probes).
    pub other_clients: u64,
    pub software: Software,
    pub evidence: Vec<Finding>,
    pub remedies: Vec<Remedy>,
    /// Sockets and cumulative probes at evenly spaced times, for the sparkline.
    pub(crate) spark_sockets: Vec<f64>,
    pub(crate) spark_probes: Vec<f64>,
    /// The socket count against time and against the driver's cumulative count (or all probes
    /// when there is no driver), at most a few hundred points, for plots.
    pub(crate) curve: Vec<CurvePoint>,
}

/// One point of a backend's socket curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct CurvePoint {
    pub(crate) ts: Ts,
    pub(crate) sockets: f64,
    /// Cumulative driver events (or probes) up to `ts`.
    pub(crate) events: f64,
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
    pub(crate) minor_backends: usize,
    /// Their connections, together.
    pub(crate) minor_conns: u64,
    /// The `--min-conns` they fell short of.
    pub(crate) min_conns: u64,
    /// What the host samples covered, when some were given.
    pub host_coverage: Option<Coverage>,
    /// The input was damaged: the verdict is `unknown` and this says what it was up to then.
    pub damage: Option<Damage>,
}

impl Report {
    /// A report with nothing in it.
    pub fn empty() -> Report {
        Report {
            verdict: Verdict::Unknown,
            backends: Vec::new(),
            minor_backends: 0,
            minor_conns: 0,
            min_conns: 0,
            host_coverage: None,
            damage: None,
        }
    }
    /// Marks the report as cut short by damaged input (`at`: the last packet read before it). Every
    /// output then says `unknown`, as the exit code does, with what was found up to the damage.
    pub fn cut_short(&mut self, at: Option<Ts>) {
        if self.damage.is_none() {
            self.damage = Some(Damage { at, verdict_before: self.verdict });
            self.verdict = Verdict::Unknown;
        }
    }
}

/// Where the input broke off, and the verdict on what came before.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Damage {
    pub(crate) at: Option<Ts>,
    pub(crate) verdict_before: Verdict,
}

/// What a host-samples file covers against the capture: its time range and backend labels, the
/// labels that name no backend in the capture, and how many backends were judged with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Coverage {
    pub samples: usize,
    pub first: Ts,
    pub last: Ts,
    pub(crate) capture: (Ts, Ts),
    pub(crate) labels: Vec<BackendSpec>,
    pub(crate) unmatched: Vec<BackendSpec>,
    /// Backends judged from host samples (three or more inside the capture).
    pub(crate) used: usize,
}

impl Coverage {
    /// The samples were given and (some of) them could not be used.
    pub fn is_short(&self) -> bool {
        self.used == 0 || !self.unmatched.is_empty()
    }
}

/// What `host` covers against the capture in `all`, as judged in `reports`.
fn coverage(all: &Backends, tl: &Timeline, host: &HostSamples, reports: &[BackendReport]) -> Option<Coverage> {
    let times = host.backends.iter().flat_map(|(_, v)| v.iter().map(|s| s.ts));
    let (first, last) = times.clone().min().zip(times.max())?;
    let labels: Vec<BackendSpec> = host.backends.iter().map(|(s, _)| *s).collect();
    let unmatched =
        labels.iter().filter(|s| !all.map.keys().any(|(ip, port)| s.matches(*ip, *port))).copied().collect();
    let capture = (
        all.map.values().map(|b| b.first).min().unwrap_or(tl.origin),
        all.map.values().map(|b| b.last).max().unwrap_or(tl.origin),
    );
    let used = reports.iter().filter(|r| r.sockets_source == SocketsSource::Host).count();
    Some(Coverage {
        samples: host.backends.iter().map(|(_, v)| v.len()).sum(),
        first,
        last,
        capture,
        labels,
        unmatched,
        used,
    })
}

/// Time to exhaustion in seconds: (limit − in use) / (kept per event × events per second).
/// The incident's arithmetic: 4000 sockets, one probe every 5 s, one kept per probe → 20 000 s.
pub(crate) fn time_to_exhaustion(limit: f64, in_use: f64, per_event: f64, events_per_s: f64) -> Option<f64> {
    let rate = per_event * events_per_s;
    if rate.is_nan() || rate <= 0.0 || !limit.is_finite() {
        return None;
    }
    Some(((limit - in_use) / rate).max(0.0))
}

/// Judges every backend.
pub fn judge(all: &Backends, host: Option<&HostSamples>, opts: &Options) -> Report {
    let Some(tl) = all.timeline else {
        return Report { min_conns: opts.min_conns, ..Report::empty() };
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
                    r.evidence.push(Finding::SamplesPortOnly { port: b.port, backends: ips });
                }
            }
        }
        reports.push(r);
    }
    reports.sort_by(|a, b| b.verdict.cmp(&a.verdict).then(b.probes.cmp(&a.probes)).then(a.name().cmp(&b.name())));
    let verdict = reports.iter().map(|r| r.verdict).max().unwrap_or(Verdict::Unknown);
    let host_coverage = host.and_then(|h| coverage(all, &tl, h, &reports));
    Report {
        verdict,
        backends: reports,
        minor_backends: minor,
        minor_conns,
        min_conns: opts.min_conns,
        host_coverage,
        damage: None,
    }
}

fn judge_backend(b: &Backend, tl: &Timeline, samples: Option<&[Sample]>, opts: &Options) -> BackendReport {
    let (kinds, probers) = settle(b);
    let probes: u64 = kinds.iter().filter(|(k, _)| k.is_probe()).map(|(_, a)| a.count).sum();
    let (window_from, window_to) = (b.first, b.last.max(b.first.saturating_add(1)));
    let cx = Ctx { b, tl, probes, span_s: crate::decode::secs(window_from, window_to).max(1e-3), kinds };
    let mut evidence = Vec::new();

    let given = samples.unwrap_or(&[]);
    let samples = samples_in_window(samples.unwrap_or(&[]), tl);
    if let (Some(first), Some(last), true) = (given.first(), given.last(), samples.is_empty()) {
        evidence.push(Finding::SamplesOutsideCapture { samples: given.len(), first: first.ts, last: last.ts });
    }
    let source = if samples.len() >= 3 { SocketsSource::Host } else { SocketsSource::Wire };

    let mut all_probe_events = Series::default();
    for (k, a) in &cx.kinds {
        if k.is_probe() {
            all_probe_events.add_from(&a.events);
        }
    }
    let close_wait_now: u64 = cx.kinds.values().map(|a| a.close_wait_now).sum();
    let stall = stall_check(&cx, &all_probe_events, &samples);

    let mut limit = opts.limit;
    let (growth_v, curve_pts, sockets_start, sockets_now, hidden_now, spark_times) = match source {
        SocketsSource::Host => {
            limit = limit.or(samples.iter().rev().find_map(|s| s.fd_limit));
            let last = *samples.last().expect("3+ samples");
            let (g, c) = host_step(&cx, &samples, matches!(stall, Some(Finding::Stopped(_))), &mut evidence);
            (g, c.points, Some(c.start), Some(c.now as f64), last.hidden, (samples[0].ts, last.ts))
        }
        SocketsSource::Wire => {
            let (g, pts, start, now) = wire_step(&cx, window_from, &mut evidence);
            (g, pts, start, Some(now), None, (window_from, window_to))
        }
    };
    let mut verdict = growth_v.verdict;
    let driver = growth_v.driver;
    let mut remedies = Vec::new();
    let software = Software::of(b, &samples);
    let erlang = software.is_erlang();
    if software != Software::default() {
        evidence.insert(0, Finding::ServerSoftware(software));
    }

    let stopped = apply_stall(&cx, stall, driver.is_none(), erlang, &mut verdict, &mut evidence, &mut remedies);
    if let Some(since) = refusing(b) {
        evidence.push(Finding::Refusing { since });
        if verdict == Verdict::Ok {
            verdict = Verdict::Suspicious;
        }
    }
    if b.synack_retransmits > 0 {
        evidence.push(Finding::SynAckRetransmits { n: b.synack_retransmits });
    }
    if b.other_clients > 0 {
        evidence.push(Finding::OtherClients { conns: b.other_clients });
    }

    let eta = projection(stopped.is_some(), driver.as_ref(), sockets_now, limit, &mut evidence);
    if let Some(d) = &driver {
        remedies.push(Remedy::ForDriver { kind: d.kind, erlang });
    }
    if verdict >= Verdict::Suspicious {
        remedies.push(Remedy::Confirm { port: b.port });
    }
    if verdict == Verdict::Unknown && evidence.iter().any(|f| matches!(f, Finding::ResetsInvisible { .. })) {
        remedies.push(Remedy::MeasureHost { port: b.port });
    }

    let x = driver.map_or(&all_probe_events, |d| &cx.kinds[&d.kind].events);
    let (spark_probes, curve) = curves_out(tl, spark_times, &all_probe_events, x, &curve_pts);
    let mut kinds_out: Vec<(Kind, u64)> = cx.kinds.iter().map(|(k, a)| (*k, a.count)).collect();
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
        other_clients: b.other_clients,
        software,
        evidence,
        remedies,
        spark_sockets: spark(&curve_pts, spark_times.0, spark_times.1, 16),
        spark_probes,
        curve,
    }
}

/// Step: what a stall means. Stopped after probes that reached accept() is the incident's
/// pattern (leak); stopped otherwise is suspicious; never having accepted is suspicious and not
/// blamed on the probes. Returns when it stopped for good.
fn apply_stall(
    cx: &Ctx,
    stall: Option<Finding>,
    no_driver: bool,
    erlang: bool,
    verdict: &mut Verdict,
    evidence: &mut Vec<Finding>,
    remedies: &mut Vec<Remedy>,
) -> Option<Stopped> {
    match stall {
        Some(Finding::Stopped(s)) => {
            // Probes that reached accept() before it stopped: the incident's pattern.
            let reached_accept = cx.kinds.iter().any(|(k, a)| {
                a.count >= 3 && (a.resets_after_accept > 0 || matches!(k, Kind::ConnectFin | Kind::HttpCheck))
            });
            let new = if reached_accept { Verdict::Leak } else { Verdict::Suspicious };
            if new > *verdict || *verdict == Verdict::Unknown {
                *verdict = new;
            }
            if reached_accept && no_driver {
                remedies.push(Remedy::AcceptorsExhausted { erlang });
            }
            evidence.push(Finding::Stopped(s));
            Some(s)
        }
        Some(f @ Finding::NeverAccepted { .. }) => {
            // A server that never accepted anything did not lose its acceptors to the probes.
            if *verdict != Verdict::Leak {
                *verdict = Verdict::Suspicious;
            }
            remedies.push(Remedy::NeverAccepted { port: cx.b.port });
            evidence.push(f);
            None
        }
        Some(f) => {
            evidence.push(f);
            None
        }
        None => None,
    }
}

/// The cumulative probes at 16 evenly spaced instants (the sparkline), and at most 400 points of
/// the socket curve against the driver's cumulative count `x` (the plot).
fn curves_out(
    tl: &Timeline,
    (from, to): (Ts, Ts),
    probes: &Series,
    x: &Series,
    curve_pts: &[(Ts, f64)],
) -> (Vec<f64>, Vec<CurvePoint>) {
    let (a, b) = (i128::from(from), i128::from(to));
    let times: Vec<Ts> = (0..16).map(|i| (a + (b - a) * (i + 1) / 16) as Ts).collect();
    let spark_probes = running(probes, tl, &times);
    let step = curve_pts.len().div_ceil(400).max(1);
    let pts: Vec<(Ts, f64)> = curve_pts.iter().copied().step_by(step).collect();
    let times: Vec<Ts> = pts.iter().map(|p| p.0).collect();
    let cum = running(x, tl, &times);
    let curve = pts.iter().zip(cum).map(|(p, c)| CurvePoint { ts: p.0, sockets: p.1, events: c }).collect();
    (spark_probes, curve)
}

/// Host samples inside the capture's window (a little slack for clock steps).
pub(crate) fn samples_in_window(samples: &[Sample], tl: &Timeline) -> Vec<Sample> {
    let slack = 2 * tl.width;
    samples.iter().filter(|s| s.ts >= tl.origin - slack && s.ts <= tl.end_of(tl.buckets) + slack).copied().collect()
}
