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
pub enum View {
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
    pub fn choose(format: Format, on_terminal: bool) -> View {
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
    pub format: Format,
    pub view: View,
    pub refresh: Duration,
    pub sample_every: Duration,
    pub opts: Options,
    /// The procfs whose conntrack table (DNAT translations) is read while sampling, to report a
    /// published port and its container as one backend; `None` when not sampling.
    pub nat: Option<PathBuf>,
    /// Read on a thread of its own (as a real capture does); `false` runs everything on the
    /// calling thread, so that a test's ticks fall exactly where its source's idle steps are.
    pub threaded: bool,
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
    pub errors: Vec<SourceError>,
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
    pub fn report(&self) -> Report {
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
