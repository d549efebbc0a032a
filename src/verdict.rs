//! Verdict: for each backend, does its socket count grow with the number of some kind of
//! connection — a probe kind, or traffic by how it ended — steadily and significantly? If so, how
//! many sockets are kept per such connection, how fast they arrive, and when the limit is reached.
//!
//! The socket count comes from the backend host's samples when there are any (`sockets_source:
//! host`), else from the wire: the connections the backend visibly still holds. The driver is the
//! connection kind whose arrivals line up with the socket increments (so a server hit by plain and
//! agent checks is tied to the agent checks only), and the slope against that driver's cumulative
//! count is "sockets kept per driver event". Decisions are pure functions of the aggregates.

use crate::backend::{Backend, Backends, Group, Series, Timeline};
use crate::classify::{self, Ending, Kind, Rhythm, Shape};
use crate::decode::Ts;
use crate::sockets::{BackendSpec, Comm, HostSamples, Sample};
use crate::stats::{self, Fit};
use crate::units::endpoint;
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
    /// Connections filed in "other clients" buckets (never probes).
    pub other_clients: u64,
    pub software: Software,
    pub evidence: Vec<Finding>,
    pub remedies: Vec<Remedy>,
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
    pub at: Option<Ts>,
    pub verdict_before: Verdict,
}

/// What a host-samples file covers against the capture: its time range and backend labels, the
/// labels that name no backend in the capture, and how many backends were judged with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Coverage {
    pub samples: usize,
    pub first: Ts,
    pub last: Ts,
    pub capture: (Ts, Ts),
    pub labels: Vec<BackendSpec>,
    pub unmatched: Vec<BackendSpec>,
    /// Backends judged from host samples (three or more inside the capture).
    pub used: usize,
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

/// Step correlations within this of each other are a tie, settled by the level fit.
const DRIVER_TIE: f64 = 0.05;
/// Step correlations below this say nothing (arrivals and increments do not line up).
const DRIVER_MIN_STEP: f64 = 0.2;

/// Whether a candidate driver scored `(step correlation, level r²)` beats the best so far.
fn beats(cand: (f64, f64), best: (f64, f64)) -> bool {
    let step = |s: f64| if s > DRIVER_MIN_STEP { s } else { 0.0 };
    let (c, b) = (step(cand.0), step(best.0));
    c > b + DRIVER_TIE || ((c - b).abs() <= DRIVER_TIE && cand.1 > best.1)
}

/// Picks the driver whose arrivals line up with the socket increments; ties go to the level fit.
fn pick_driver(c: &Curves) -> Option<(Kind, Fit, f64)> {
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
const MIN_GROWTH: f64 = 3.0;
/// … by at least one socket per hundred driver events (below that a restart comes first) …
const MIN_SLOPE: f64 = 0.01;
/// … with this rank correlation for `leak`, and this for `suspicious` …
const LEAK_RHO: f64 = 0.9;
const SUSPICIOUS_RHO: f64 = 0.6;
/// … in no step larger than this share of the growth (steady, not one burst) …
const MAX_STEP_SHARE: f64 = 0.5;
/// … keeping at least this share of its peak (not released again) …
const MIN_RETAINED: f64 = 0.5;
/// … over at least this many driver events.
const MIN_EVENTS: u64 = 5;

/// The decision on one socket curve against its driver.
fn decide_growth(s: &[f64], fit: &Fit, rho: f64, events: u64) -> Verdict {
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
pub(crate) fn judge_growth(events: &[f64], sockets: &[f64], n_events: u64) -> (Verdict, Option<Fit>, f64) {
    match stats::ols(events, sockets) {
        Some(fit) => {
            let rho = stats::spearman(events, sockets);
            (decide_growth(sockets, &fit, rho, n_events), Some(fit), rho)
        }
        None => (Verdict::Ok, None, 0.0),
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

/// What one backend's judgement found: the numbers behind each statement. Sentences are written
/// from these in [`crate::explain`]; tests assert these, not wording.
#[derive(Clone, Debug, PartialEq)]
pub enum Finding {
    /// Host samples: sockets grew with a driver.
    HostGrowth {
        start: f64,
        now: u64,
        span_s: f64,
        driver: Driver,
        samples: usize,
    },
    /// Host samples: sockets did not follow any kind (from `start` to `now`).
    HostNoGrowth {
        start: f64,
        now: u64,
        probes: u64,
        span_s: f64,
    },
    /// Socket fds in no kernel TCP table (accepted, reset, never closed).
    HiddenSockets {
        n: u64,
    },
    /// CLOSE_WAIT sockets counted on the host.
    HostCloseWait {
        n: u64,
    },
    /// The accept queue holds connections and the kernel drops new handshakes.
    AcceptQueueOverflowing {
        queue: u64,
        overflows: u64,
    },
    /// Sockets plateaued at the limit: the fit covers the growth before it.
    FitBeforePlateau {
        plateau: f64,
        samples: usize,
    },
    /// On the wire, the server never closed connections of one kind after the client's FIN.
    WireCloseWait {
        never_closed: u64,
        driver: Driver,
    },
    /// Connections half-closed by the client and never closed by the server.
    HalfClosed {
        n: u64,
    },
    /// Connections end in a reset after accept(): a leak of them is invisible on the wire.
    ResetsInvisible {
        kinds: Vec<(Kind, u64)>,
    },
    /// Half-open probes cannot reach accept() on Linux.
    HalfOpenCannotLeak,
    /// The backend stopped answering and never recovered.
    Stopped(Stopped),
    /// It stopped answering, but there is no sign it ever accepted a connection: not a
    /// probe-driven leak. `queue` is the accept queue from the host samples, when known.
    NeverAccepted {
        at: Ts,
        requests_unanswered: u64,
        queue: Option<u64>,
    },
    /// The wire suggested it stopped answering, but host samples show an accept queue that is
    /// neither full nor growing: it is answering.
    StallOverruled {
        at: Ts,
        queue: u64,
    },
    /// Nothing listens any more.
    Refusing {
        since: Ts,
    },
    SynAckRetransmits {
        n: u64,
    },
    /// The projection to the limit.
    Exhaustion {
        driver: Driver,
        limit: u64,
        in_use: f64,
        eta_s: f64,
    },
    /// Growth without a known limit.
    GainPerMinute {
        per_minute: f64,
    },
    /// Port-only host samples applied to several backends.
    SamplesPortOnly {
        port: u16,
        backends: Vec<IpAddr>,
    },
    /// Host samples were given for this backend but none fall inside the capture.
    SamplesOutsideCapture {
        samples: usize,
        first: Ts,
        last: Ts,
    },
    /// Connections filed in "other clients" buckets (past the group caps): never probes.
    OtherClients {
        conns: u64,
    },
    /// What the server is: the sampled process's name, the `Server:` header of its responses.
    ServerSoftware(Software),
    /// Its connections were also seen to this published address, before DNAT (joined through
    /// the host's conntrack table).
    Published {
        ip: IpAddr,
        port: u16,
    },
    /// No conntrack to ask: this other backend carried the very same probes (same prober, count
    /// and interval), and may be this one seen on the other side of a DNAT.
    MaybeSameBackend {
        ip: IpAddr,
        port: u16,
    },
}

/// What the evidence says the server software is.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Software {
    /// The sampled process (`/proc/PID/comm`): `beam.smp` is the Erlang VM.
    pub process: Option<Comm>,
    /// The container (or systemd unit) the sampled process runs in.
    pub container: Option<crate::container::Container>,
    /// The `Server:` header of its responses, as one of [`crate::http::SERVER_TOKENS`].
    pub header: Option<&'static str>,
}

impl Software {
    fn of(b: &Backend, samples: &[Sample]) -> Software {
        Software {
            process: samples.iter().rev().find_map(|s| s.process),
            container: samples.iter().rev().find_map(|s| s.container),
            header: usize::from(b.server).checked_sub(1).and_then(|i| crate::http::SERVER_TOKENS.get(i).copied()),
        }
    }
    /// Runs on the Erlang VM (Bandit / Thousand Island, Cowboy): the Thousand Island advice fits.
    pub fn is_erlang(&self) -> bool {
        self.process.is_some_and(|p| p.is_erlang_vm()) || self.header.is_some_and(crate::http::is_erlang_server)
    }
}

/// What to change, as data; [`crate::explain`] words it.
#[derive(Clone, Debug, PartialEq)]
pub enum Remedy {
    /// Fix for a leak that follows this kind. `erlang`: the server is the Erlang VM (Bandit /
    /// Thousand Island), so the Thousand Island advice fits.
    ForDriver { kind: Kind, erlang: bool },
    /// It stopped accepting after probes that reached accept(): acceptors or sockets ran out.
    AcceptorsExhausted { erlang: bool },
    /// A server that never accepted: look at why accept() is not called.
    NeverAccepted { port: u16 },
    /// Resets hide the leak: measure the host.
    MeasureHost { port: u16 },
    /// Commands that confirm it on the host.
    Confirm { port: u16 },
}

/// The host's socket curve: where it started, where it is, and its points.
struct HostCurve {
    start: f64,
    now: u64,
    points: Vec<(Ts, f64)>,
}

/// Judgement of the socket curve: the verdict it supports and the driver it follows.
struct CurveVerdict {
    verdict: Verdict,
    driver: Option<Driver>,
}

/// Everything one backend's steps share.
struct Ctx<'a> {
    b: &'a Backend,
    tl: &'a Timeline,
    kinds: BTreeMap<Kind, KindAgg>,
    probes: u64,
    span_s: f64,
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

    let mut stopped = None;
    match stall {
        Some(Finding::Stopped(s)) => {
            // Probes that reached accept() before it stopped: the incident's pattern.
            let reached_accept = cx.kinds.iter().any(|(k, a)| {
                a.count >= 3 && (a.resets_after_accept > 0 || matches!(k, Kind::ConnectFin | Kind::HttpCheck))
            });
            let new = if reached_accept { Verdict::Leak } else { Verdict::Suspicious };
            if new > verdict || verdict == Verdict::Unknown {
                verdict = new;
            }
            if reached_accept && driver.is_none() {
                remedies.push(Remedy::AcceptorsExhausted { erlang });
            }
            stopped = Some(s);
            evidence.push(Finding::Stopped(s));
        }
        Some(f @ Finding::NeverAccepted { .. }) => {
            // A server that never accepted anything did not lose its acceptors to the probes.
            if verdict != Verdict::Leak {
                verdict = Verdict::Suspicious;
            }
            remedies.push(Remedy::NeverAccepted { port: b.port });
            evidence.push(f);
        }
        Some(f) => evidence.push(f),
        None => {}
    }
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

    let probe_points: Vec<(Ts, f64)> = {
        let (a, b) = (i128::from(spark_times.0), i128::from(spark_times.1));
        let times: Vec<Ts> = (0..16).map(|i| (a + (b - a) * (i + 1) / 16) as Ts).collect();
        let cum = running(&all_probe_events, tl, &times);
        times.into_iter().zip(cum).collect()
    };
    let curve = {
        let x = driver.map_or(&all_probe_events, |d| &cx.kinds[&d.kind].events);
        let step = curve_pts.len().div_ceil(400).max(1);
        let pts: Vec<(Ts, f64)> = curve_pts.iter().copied().step_by(step).collect();
        let times: Vec<Ts> = pts.iter().map(|p| p.0).collect();
        let cum = running(x, tl, &times);
        pts.iter().zip(cum).map(|(p, c)| CurvePoint { ts: p.0, sockets: p.1, events: c }).collect()
    };
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
        spark_probes: probe_points.iter().map(|p| p.1).collect(),
        curve,
    }
}

/// Host samples inside the capture's window (a little slack for clock steps).
pub fn samples_in_window(samples: &[Sample], tl: &Timeline) -> Vec<Sample> {
    let slack = 2 * tl.width;
    samples.iter().filter(|s| s.ts >= tl.origin - slack && s.ts <= tl.end_of(tl.buckets) + slack).copied().collect()
}

/// Step: the socket curve from host samples, the driver it follows, and what the host shows.
fn host_step(cx: &Ctx, samples: &[Sample], stopped: bool, evidence: &mut Vec<Finding>) -> (CurveVerdict, HostCurve) {
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
fn wire_step(cx: &Ctx, from: Ts, evidence: &mut Vec<Finding>) -> (CurveVerdict, Vec<(Ts, f64)>, Option<f64>, f64) {
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
fn stall_check(cx: &Ctx, probe_events: &Series, samples: &[Sample]) -> Option<Finding> {
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
fn host_never_accepted(cx: &Ctx, samples: &[Sample]) -> Option<bool> {
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
fn projection(
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

/// Three or more connections that did not get what their group normally gets, after the last
/// one that did.
fn stopped(b: &Backend, tl: &Timeline, probe_events: &Series) -> Option<Stopped> {
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
fn refusing(b: &Backend) -> Option<Ts> {
    let last = b.last_answered();
    let after: Vec<Ts> = b.refused.sorted().into_iter().filter(|t| last.is_none_or(|a| *t > a)).collect();
    (after.len() >= 3 && last.is_some()).then(|| after[0])
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
}
