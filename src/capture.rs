//! Capture: the `capture` subcommand's run, once its interface and outputs are open — the
//! pipeline on a packet source, plus what a running capture does on top of it: sample the backend
//! host's sockets (a [`HostSampler`]), refresh the view, publish metrics, and at the end judge and
//! report. Verdicts are the same pure functions `analyze` uses.
//!
//! Everything it talks to is passed in ([`Io`]): the source, the sampler, the clock, the outputs.
//! `main` opens the real ones (an interface, procfs, the system clock, stdout); the tests pass an
//! in-memory source, a fake sampler and a fake clock. Stopping (a signal, a packet count, a
//! deadline) is the source's job: it stops taking packets and drains what it holds, and the
//! pipeline ends when the source does. The hooks run on the flow thread, never on the thread that
//! reads packets.
//!
//! Naming: this module is the *capture* (the subcommand's run); a *live* source is the libpcap
//! interface it usually reads ([`crate::source::LiveSource`]); *host samples* are the socket counts
//! a sampler ([`crate::sampler`]) takes and [`crate::sockets`] holds and writes as CSV.

use crate::backend::Backends;
use crate::clock::Clock;
use crate::decode::{DecodeStats, Ts};
use crate::flow::{Conn, FlowConfig, FlowTable};
use crate::metrics::MetricsServer;
use crate::nat::{self, NatTable};
use crate::pipeline::{self, Consumer};
use crate::render::{self, Format};
use crate::sampler::HostSampler;
use crate::sockets::{self, HostSamples};
use crate::source::{PacketSource, SharedDrops, SourceError};
use crate::verdict::{Options, Report, Verdict};
use std::collections::HashSet;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the periodic view is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum View {
    /// A terminal: redraw the report table in place.
    Screen,
    /// A pipe or file: one plain line per backend per refresh.
    Lines,
    /// JSON lines: every finished connection, and backend summaries at each refresh.
    Jsonl,
    /// Nothing until the end.
    Quiet,
}

impl View {
    /// The view for a report format, on a terminal or not.
    pub(crate) fn choose(format: Format, on_terminal: bool) -> View {
        match (format, on_terminal) {
            // A JSON document or a Nagios line on stdout must stay just that.
            (Format::Json | Format::Nagios, _) => View::Quiet,
            (Format::Jsonl, _) => View::Jsonl,
            (_, true) => View::Screen,
            (_, false) => View::Lines,
        }
    }
}

/// How a running capture reports: the part of `cli::CaptureConfig` that is not about opening
/// things.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The interface (`lo` has its own way of counting, see [`crate::explain::kernel_counters`]).
    pub iface: String,
    /// The final report's format.
    pub(crate) format: Format,
    pub(crate) view: View,
    pub(crate) refresh: Duration,
    pub(crate) sample_every: Duration,
    pub(crate) opts: Options,
    /// The procfs whose conntrack table (DNAT translations) is read while sampling, to report a
    /// published port and its container as one backend; `None` when not sampling.
    pub(crate) nat: Option<PathBuf>,
    /// Read on a thread of its own (as a real capture does); `false` runs everything on the
    /// calling thread, so that a test's ticks fall exactly where its source's idle steps are.
    pub(crate) threaded: bool,
}

/// What a running capture talks to, all passed in.
pub struct Io<'a> {
    pub sampler: Option<Box<dyn HostSampler + 'a>>,
    /// Where samples are also written (`dump.pcap.sockets.csv`), its header already written.
    pub csv: Option<Box<dyn Write + 'a>>,
    /// The view and the final report.
    pub out: Box<dyn Write + 'a>,
    /// Set when the view's output is closed: the source stops (and drains) as on a signal.
    pub stop: Arc<AtomicBool>,
    pub clock: Arc<dyn Clock>,
    /// Where the latest metrics are published.
    pub metrics: Option<MetricsServer>,
}

/// How a capture ended: the report, the decoder's and the kernel's counters, and what went wrong.
#[derive(Debug)]
pub struct Ended {
    pub report: Report,
    pub stats: DecodeStats,
    /// Read errors (a live source's is fatal and ends the capture).
    pub(crate) errors: Vec<SourceError>,
    /// Problems met while running (sampling, writing), reported once at the end.
    pub warnings: Vec<String>,
}

impl Ended {
    /// The run's verdict: the report's, or "could not decide" when reading failed.
    pub fn verdict(&self) -> Verdict {
        if self.errors.is_empty() {
            self.report.verdict
        } else {
            Verdict::Unknown
        }
    }

    /// The lines for standard error after the report: the kernel's counters, an overlay hint when
    /// given, the warnings, the first read error.
    pub fn notes(&self, iface: &str, overlay_hint: Option<String>) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(d) = &self.stats.kernel {
            v.push(crate::explain::kernel_counters(iface, self.stats.frames, d, d.dropped_kernel > 0));
        }
        v.extend(overlay_hint);
        v.extend(self.warnings.iter().cloned());
        v.extend(self.errors.first().map(|e| e.to_string()));
        v
    }
}

/// A running capture: the pipeline's consumer.
pub struct Capture<'a> {
    set: Settings,
    io: Io<'a>,
    backends: Backends,
    host: HostSamples,
    /// The view now: it goes quiet when its output fails.
    view: View,
    next_refresh: Instant,
    next_sample: Instant,
    watched: HashSet<(IpAddr, u16)>,
    warnings: Vec<String>,
    /// The source's kernel counters, read at each refresh.
    drops: Option<SharedDrops>,
    /// Kernel drops shown at the last refresh, to tell when they grow.
    shown_drops: u64,
    packets: u64,
    /// DNAT translations from the host's conntrack table (read while sampling).
    nat: Option<NatTable>,
    next_nat: Instant,
}

impl<'a> Capture<'a> {
    pub fn new(set: Settings, io: Io<'a>) -> Self {
        let now = io.clock.instant();
        Capture {
            view: set.view,
            next_refresh: now + set.refresh,
            next_sample: now,
            nat: set.nat.as_ref().map(|_| NatTable::default()),
            next_nat: now,
            set,
            io,
            backends: Backends::new(),
            host: HostSamples::default(),
            watched: HashSet::new(),
            warnings: Vec::new(),
            drops: None,
            shown_drops: 0,
            packets: 0,
        }
    }

    /// Runs the pipeline on `src` until it ends, then finishes what is open, takes a last sample
    /// and judges.
    pub fn run(&mut self, src: &mut (dyn PacketSource + Send)) -> Ended {
        self.drops = src.counters();
        let mut table = FlowTable::new(FlowConfig::default());
        let mut stats = DecodeStats::default();
        let mut errors = Vec::new();
        // One thread reads, decodes and writes -w; this one tracks flows, samples, serves the view
        // and the metrics, so none of those ever holds up the reading.
        if self.set.threaded {
            pipeline::run_threaded(src, &mut table, &mut stats, &mut errors, self);
        } else {
            pipeline::run(src, &mut table, &mut stats, &mut errors, self);
        }
        if let Err(e) = src.flush() {
            self.warnings.push(e.to_string());
        }
        table.finish(&mut |c| self.conn(c));
        self.sample_now();
        self.read_nat();
        stats.kernel = src.drops();
        Ended { report: self.report(), stats, errors, warnings: std::mem::take(&mut self.warnings) }
    }

    /// The final report, on the view's output (a screen is cleared first).
    pub fn write_report(&mut self, ended: &Ended) -> std::io::Result<()> {
        let now = self.io.clock.wall();
        let mut out = std::io::BufWriter::new(&mut self.io.out);
        if self.set.view == View::Screen {
            write!(out, "\x1b[2J\x1b[H")?;
        }
        render::report(&mut out, self.set.format, &ended.report, &ended.stats, now)?;
        out.flush()
    }

    /// Starts sampling servers on this host that the traffic shows as backends: in hcleak's own
    /// network namespace or any other (containers), which the sampler finds by address and port.
    fn watch_new_backends(&mut self, table: &FlowTable) {
        let Some(s) = self.io.sampler.as_mut() else { return };
        let mut new: Vec<(IpAddr, u16)> = Vec::new();
        for &(ip, port) in self.backends.map.keys() {
            if !self.watched.contains(&(ip, port)) {
                new.push((ip, port));
            }
        }
        for c in table.live() {
            if !self.watched.contains(&(c.resp_h, c.resp_p)) {
                new.push((c.resp_h, c.resp_p));
            }
        }
        // A published address has no server of its own: its container has.
        if let Some(n) = &self.nat {
            for d in &n.seen {
                if self.backends.map.contains_key(&d.published) && !self.watched.contains(&d.backend) {
                    new.push(d.backend);
                }
            }
        }
        new.sort_unstable();
        new.dedup();
        for (ip, port) in new {
            self.watched.insert((ip, port));
            s.watch(ip, port);
        }
    }

    /// Takes one round of host samples now.
    fn sample_now(&mut self) {
        let Some(s) = self.io.sampler.as_mut() else { return };
        for (spec, x) in s.sample(self.io.clock.wall()) {
            if let Some(w) = self.io.csv.as_mut() {
                if let Err(e) = writeln!(w, "{}", sockets::csv_row(&spec, &x)).and_then(|_| w.flush()) {
                    self.warnings.push(format!("writing samples: {e}"));
                    self.io.csv = None;
                }
            }
            self.host.push(spec, x);
        }
    }

    /// The report on everything seen so far.
    pub(crate) fn report(&self) -> Report {
        nat::judge(&self.backends, Some(&self.host), &self.set.opts, self.nat.as_ref())
    }

    /// Reads the conntrack table, at most once a second.
    fn read_nat(&mut self) {
        let now = self.io.clock.instant();
        if let (Some(n), Some(root)) = (self.nat.as_mut().filter(|_| now >= self.next_nat), &self.set.nat) {
            self.next_nat = now + Duration::from_secs(1);
            n.read(root);
        }
    }

    /// Publishes the current report to the metrics endpoint, if any.
    fn publish_metrics(&self, r: &Report) {
        if let Some(m) = &self.io.metrics {
            let drops = self.drops.as_ref().and_then(|d| d.lock().ok().and_then(|g| *g));
            m.publish(crate::metrics::exposition(r, &crate::metrics::CaptureCounters { packets: self.packets, drops }));
        }
    }

    /// The kernel's counters as the view shows them: always on a screen, on a line view only when
    /// the drops have grown since the last refresh.
    fn counters_line(&mut self, stats: &DecodeStats, always: bool) -> Option<String> {
        let d = self.drops.as_ref().and_then(|d| d.lock().ok().and_then(|g| *g))?;
        let dropped = u64::from(d.dropped_kernel) + u64::from(d.dropped_iface);
        let grew = dropped > self.shown_drops;
        self.shown_drops = dropped;
        (always || grew).then(|| crate::explain::kernel_counters(&self.set.iface, stats.frames, &d, grew))
    }

    fn refresh_view(&mut self, stats: &DecodeStats) {
        let r = self.report();
        let counters = match self.view {
            View::Screen => self.counters_line(stats, true),
            View::Lines => self.counters_line(stats, false),
            View::Jsonl | View::Quiet => None,
        };
        let now: Ts = self.io.clock.wall();
        let out = &mut self.io.out;
        let res = match self.view {
            View::Quiet => Ok(()),
            View::Screen => write!(out, "\x1b[2J\x1b[H")
                .and_then(|_| render::report_table(out, &r, stats))
                .and_then(|_| counters.map_or(Ok(()), |c| writeln!(out, "{c}")))
                .and_then(|_| out.flush()),
            View::Lines => render::report_lines(out, &r, now)
                .and_then(|_| counters.map_or(Ok(()), |c| writeln!(out, "{c}")))
                .and_then(|_| out.flush()),
            View::Jsonl => render::report_jsonl(out, &r, "backend", now),
        };
        if let Err(e) = res {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                self.io.stop.store(true, Ordering::Relaxed);
            }
            self.view = View::Quiet;
        }
    }
}

impl Consumer for Capture<'_> {
    fn conn(&mut self, c: Conn) {
        if self.view == View::Jsonl {
            let label = crate::classify::flow_label(&c);
            if render::conn_jsonl(&mut self.io.out, &c, label).and_then(|_| self.io.out.flush()).is_err() {
                self.view = View::Quiet;
            }
        }
        self.backends.add(&c);
    }

    fn tick_due(&mut self) -> bool {
        let now = self.io.clock.instant();
        now >= self.next_sample || now >= self.next_refresh
    }

    fn tick(&mut self, table: &mut FlowTable, stats: &DecodeStats) -> bool {
        let now = self.io.clock.instant();
        if now >= self.next_sample {
            self.next_sample = now + self.set.sample_every;
            // Packet time stands still on an idle interface: sweep by the wall clock.
            let mut done = Vec::new();
            table.sweep(self.io.clock.wall(), &mut |c| done.push(c));
            for c in done {
                self.conn(c);
            }
            self.read_nat();
            self.watch_new_backends(table);
            self.sample_now();
            self.packets = stats.frames;
            if self.io.metrics.is_some() {
                let r = self.report();
                self.publish_metrics(&r);
            }
        }
        if now >= self.next_refresh {
            self.next_refresh = now + self.set.refresh;
            self.refresh_view(stats);
        }
        true
    }
}
#[cfg(test)]
mod tests {
    //! The capture's logic without root, an interface or HAProxy: an in-memory source whose frames
    //! move a fake clock, a fake sampler, and the view written to memory. Nothing sleeps.
    use super::*;
    use crate::clock::FakeClock;
    use crate::decode::{DropStats, Link, ACK, RST, SYN};
    use crate::sampler::{FakeLog, FakeSampler};
    use crate::sockets::Sample;
    use crate::source::{MemorySource, Step, StopWhen};
    use std::sync::Mutex;

    /// A writer whose bytes the test can read while the capture still holds it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn take(&self) -> String {
            String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
        }
    }

    /// A reader that has gone away (`hcleak capture | head`).
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    const T0: Ts = 1_700_000_000_000_000_000;
    const LEAKY: [u8; 4] = [10, 0, 0, 1];
    const HEALTHY: [u8; 4] = [10, 0, 0, 2];
    const PROBER: [u8; 4] = [10, 0, 0, 9];
    /// One probe to each backend every 200 ms.
    const EVERY: Ts = 200_000_000;

    fn ip(a: [u8; 4]) -> IpAddr {
        IpAddr::from(a)
    }

    fn frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
        crate::testkit::frame((src, sport), (dst, dport), flags, seq, ack, &[])
    }

    /// HAProxy's `tcp-check connect` + `expect`: handshake, bare ACK, RST (`S h A R`).
    fn probe(server: [u8; 4], t: Ts, sport: u16) -> Vec<Step> {
        let (c, s) = (1000u32, 5000u32);
        [
            (t, frame(PROBER, server, sport, 8080, SYN, c, 0)),
            (t + 100_000, frame(server, PROBER, 8080, sport, SYN | ACK, s, c + 1)),
            (t + 200_000, frame(PROBER, server, sport, 8080, ACK, c + 1, s + 1)),
            (t + 300_000, frame(PROBER, server, sport, 8080, RST | ACK, c + 1, s + 1)),
        ]
        .into_iter()
        .map(|(t, f)| Step::Frame(t, f))
        .collect()
    }

    /// `n` probes to each backend, with a quiet moment (the interface idle) after each round.
    fn probes(n: usize) -> Vec<Step> {
        let mut v = Vec::new();
        for i in 0..n {
            let t = T0 + i as Ts * EVERY;
            let sport = 20_000 + i as u16;
            v.extend(probe(LEAKY, t, sport));
            v.extend(probe(HEALTHY, t + 1_000_000, sport));
            v.push(Step::Idle(Duration::from_millis(50)));
        }
        // The interface stays idle long enough for the last connections to be swept.
        v.extend((0..8).map(|_| Step::Idle(Duration::from_secs(1))));
        v
    }

    fn sample(ts: Ts, sockets: u64) -> Sample {
        Sample { ts, sockets, ..Sample::default() }
    }

    /// The leaky server keeps one socket per probe it has seen; the healthy one keeps none.
    fn sampler() -> FakeSampler {
        FakeSampler::default().serve(ip(LEAKY), 8080, |ts| sample(ts, 2 + ((ts - T0).max(0) / EVERY) as u64)).serve(
            ip(HEALTHY),
            8080,
            |ts| sample(ts, 2),
        )
    }

    fn settings(view: View, threaded: bool) -> Settings {
        Settings {
            iface: "eth0".into(),
            // As `--format jsonl` gives: JSON lines while running and at the end.
            format: if view == View::Jsonl { Format::Jsonl } else { Format::Json },
            view,
            refresh: Duration::from_secs(2),
            sample_every: Duration::from_secs(1),
            opts: Options { limit: None, min_conns: 3 },
            nat: None,
            threaded,
        }
    }

    struct Run {
        ended: Ended,
        out: String,
        csv: String,
        log: FakeLog,
        read: usize,
        steps: usize,
    }

    fn run(view: View, threaded: bool, steps: Vec<Step>, out: Box<dyn Write>, shown: Shared) -> Run {
        let clock = Arc::new(FakeClock::at(T0));
        let stop = Arc::new(AtomicBool::new(false));
        let n = steps.len();
        let mut src = MemorySource::new(Link::Ethernet, steps)
            .with_clock(Arc::clone(&clock))
            .with_counters(DropStats { received: 10, dropped_kernel: 0, dropped_iface: 0 });
        src.stop_when(StopWhen { flag: Arc::clone(&stop), ..StopWhen::default() });
        let fake = sampler();
        let log = fake.log();
        let csv = Shared::default();
        let io = Io {
            sampler: Some(Box::new(fake)),
            csv: Some(Box::new(csv.clone())),
            out,
            stop,
            clock: clock as Arc<dyn Clock>,
            metrics: None,
        };
        let mut cap = Capture::new(settings(view, threaded), io);
        let ended = cap.run(&mut src);
        cap.write_report(&ended).ok();
        let log = log.lock().unwrap().clone();
        Run { ended, out: shown.take(), csv: csv.take(), log, read: src.position(), steps: n }
    }

    fn backend(r: &Report, a: [u8; 4]) -> &crate::verdict::BackendReport {
        r.backends.iter().find(|b| (b.ip, b.port) == (ip(a), 8080)).unwrap_or_else(|| panic!("no {a:?} in {r:#?}"))
    }

    /// The capture's whole job, without root: backends found on the wire are handed to the
    /// sampler, sampled once a second of packet time, and judged with those samples at the end.
    #[test]
    fn a_capture_samples_the_backends_it_sees_and_tells_the_leaking_one() {
        let shown = Shared::default();
        let r = run(View::Lines, false, probes(60), Box::new(shown.clone()), shown);
        let report = &r.ended.report;
        assert_eq!(backend(report, LEAKY).verdict, Verdict::Leak, "{report:#?}");
        assert_eq!(backend(report, HEALTHY).verdict, Verdict::Ok, "{report:#?}");
        assert_eq!(r.ended.verdict(), Verdict::Leak);
        assert!(r.ended.errors.is_empty() && r.ended.warnings.is_empty());
        // Each backend is asked for once, as soon as its first connection is seen.
        assert_eq!(r.log.asked, vec![(ip(LEAKY), 8080), (ip(HEALTHY), 8080)]);
        // A round a second of packet time (60 × 200 ms of probes, 8 s idle), and one at the end.
        let secs: Vec<Ts> = r.log.rounds.windows(2).map(|w| (w[1] - w[0]) / 1_000_000_000).collect();
        assert!((19..=22).contains(&r.log.rounds.len()), "{} rounds: {:?}", r.log.rounds.len(), r.log.rounds);
        assert!(secs[..secs.len() - 1].iter().all(|s| *s == 1), "a round every second: {secs:?}");
        // Every sample also went to the CSV, under its header's columns.
        let rows: Vec<&str> = r.csv.lines().collect();
        assert!(rows.len() >= 2 * (r.log.rounds.len() - 2), "{}", r.csv);
        assert!(rows.iter().all(|l| l.contains(",10.0.0.1:8080,") || l.contains(",10.0.0.2:8080,")));
        // The final report, on the view's output, with the kernel's counters.
        assert_eq!(r.ended.stats.kernel, Some(DropStats { received: 10, dropped_kernel: 0, dropped_iface: 0 }));
        assert!(r.out.contains("\"verdict\": \"leak\"") || r.out.contains("\"verdict\":\"leak\""), "{}", r.out);
        let notes = r.ended.notes("eth0", None);
        assert_eq!(notes.len(), 1, "the kernel's counters, nothing else: {notes:?}");
        assert!(r.read == r.steps, "the source was read to its end");
    }

    /// The same verdicts when the source is read on a thread of its own, as a real capture is.
    #[test]
    fn two_threads_judge_the_same() {
        let shown = Shared::default();
        let r = run(View::Quiet, true, probes(60), Box::new(shown.clone()), shown);
        assert_eq!(backend(&r.ended.report, LEAKY).verdict, Verdict::Leak);
        assert_eq!(backend(&r.ended.report, HEALTHY).verdict, Verdict::Ok);
        assert_eq!(r.log.asked.len(), 2);
    }

    /// The line view: a line per backend every refresh (2 s of packet time), nothing else; the
    /// JSON-lines view: every connection and backend summaries; quiet: only the final report.
    #[test]
    fn each_view_writes_what_it_promises_and_when() {
        let shown = Shared::default();
        let lines = run(View::Lines, false, probes(60), Box::new(shown.clone()), shown).out;
        let count = |b: &str| lines.lines().filter(|l| l.contains(&format!(" backend={b} "))).count();
        let (leaky, healthy) = (count("10.0.0.1:8080"), count("10.0.0.2:8080"));
        // 20 s of packet time at one refresh every 2 s; the backends appear once they have
        // finished connections (5 s after the first).
        let times: std::collections::BTreeSet<&str> =
            lines.lines().filter(|l| l.starts_with("2023-")).filter_map(|l| l.split(' ').next()).collect();
        assert!((9..=10).contains(&times.len()), "{} refreshes:\n{lines}", times.len());
        assert!(leaky == healthy && (6..=8).contains(&leaky), "{leaky}/{healthy} backend lines:\n{lines}");
        assert!(!lines.contains("\x1b["), "no escapes off a terminal");

        let shown = Shared::default();
        let screen = run(View::Screen, false, probes(20), Box::new(shown.clone()), shown).out;
        assert!(screen.matches("\x1b[2J\x1b[H").count() >= 3, "{screen}");

        let shown = Shared::default();
        let jsonl = run(View::Jsonl, false, probes(20), Box::new(shown.clone()), shown).out;
        let mut kinds = std::collections::HashMap::<String, usize>::new();
        for l in jsonl.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            *kinds.entry(v["type"].as_str().unwrap_or("?").to_string()).or_default() += 1;
        }
        assert_eq!(kinds.get("conn"), Some(&40), "every connection, once: {kinds:?}");
        assert!(kinds.get("backend").is_some_and(|n| *n >= 2), "{kinds:?}");

        let shown = Shared::default();
        let quiet = run(View::Quiet, false, probes(20), Box::new(shown.clone()), shown).out;
        assert!(quiet.trim_start().starts_with('{'), "only the final report: {quiet}");
        serde_json::from_str::<serde_json::Value>(&quiet).expect("one JSON document");
    }

    /// `hcleak capture | head`: the view's reader goes away, the capture stops taking packets
    /// (as on Ctrl-C) and still judges what it saw.
    #[test]
    fn a_closed_view_stops_the_capture() {
        let r = run(View::Lines, false, probes(60), Box::new(Closed), Shared::default());
        assert!(r.read < r.steps / 2, "read {} of {} steps after the view closed", r.read, r.steps);
        assert!(!r.ended.report.backends.is_empty());
    }

    /// A read error (a live source's is fatal) makes the verdict "could not decide", and is said.
    #[test]
    fn a_read_error_makes_the_verdict_unknown() {
        let mut steps = probes(30);
        steps.insert(40, Step::Error(SourceError::Live { iface: "eth0".into(), msg: "interface went down".into() }));
        let shown = Shared::default();
        let r = run(View::Quiet, false, steps, Box::new(shown.clone()), shown);
        assert_eq!(r.ended.verdict(), Verdict::Unknown);
        let notes = r.ended.notes("eth0", Some("a hint".into()));
        assert_eq!(notes[1..], ["a hint".to_string(), "capture on eth0: interface went down".to_string()]);
    }

    #[test]
    fn the_view_follows_the_format_and_the_terminal() {
        use View::*;
        for (format, tty, want) in [
            (Format::Table, true, Screen),
            (Format::Table, false, Lines),
            (Format::Json, true, Quiet),
            (Format::Nagios, true, Quiet),
            (Format::Jsonl, true, Jsonl),
            (Format::Jsonl, false, Jsonl),
        ] {
            assert_eq!(View::choose(format, tty), want, "{format:?} on a terminal: {tty}");
        }
    }

    #[test]
    fn the_line_view_prints_kernel_drops_when_they_grow_with_a_hint() {
        let out = Shared::default();
        let counters = Arc::new(Mutex::new(Some(DropStats { received: 100, dropped_kernel: 0, dropped_iface: 0 })));
        let io = Io {
            sampler: None,
            csv: None,
            out: Box::new(out.clone()),
            stop: Arc::default(),
            clock: Arc::new(FakeClock::at(T0)),
            metrics: None,
        };
        let mut cap = Capture::new(Settings { refresh: Duration::ZERO, ..settings(View::Lines, false) }, io);
        cap.drops = Some(Arc::clone(&counters));
        let mut table = FlowTable::new(FlowConfig::default());
        let stats = DecodeStats { frames: 100, ..DecodeStats::default() };
        assert!(cap.tick(&mut table, &stats));
        assert!(!out.take().contains("dropped by kernel"), "no drops, no line");
        *counters.lock().unwrap() = Some(DropStats { received: 300, dropped_kernel: 7, dropped_iface: 0 });
        cap.tick(&mut table, &stats);
        let text = out.take();
        assert!(text.contains("7 dropped by kernel") && text.contains("-B, in KiB"), "{text}");
        // Not grown since: not repeated.
        cap.tick(&mut table, &stats);
        assert!(!out.take().contains("dropped by kernel"));
    }
}
