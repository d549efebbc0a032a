//! Live: the hooks a running capture needs on top of the pipeline — sample the backend host once a
//! second; refresh the view every few seconds, with the kernel's drop counters. Stopping (a signal,
//! a packet count, a deadline) is the source's job: it stops taking packets and drains the ring,
//! and the pipeline ends when the source does. These hooks run on the flow thread, never on the
//! thread that reads packets. Verdicts are the same pure functions `analyze` uses.

use crate::backend::Backends;
use crate::flow::{Conn, FlowTable};
use crate::nat::{self, NatTable};
use crate::pipeline::{Consumer, DecodeStats};
use crate::render;
use crate::sampler::HostSampler;
use crate::sockets::{self, HostSamples};
use crate::verdict::{self, Options};
use std::collections::HashSet;
use std::io::Write;
use std::net::IpAddr;
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

pub use crate::clock::now_ts;

pub struct Live<'a> {
    pub backends: Backends,
    pub host: HostSamples,
    pub sampler: Option<Box<dyn HostSampler + 'a>>,
    /// Where samples are also written (`dump.pcap.sockets.csv`).
    pub csv: Option<Box<dyn Write + 'a>>,
    /// Set when the view's output is closed: the capture stops (and drains) as on a signal.
    pub stop: Arc<AtomicBool>,
    pub refresh: Duration,
    pub sample_every: Duration,
    pub view: View,
    pub opts: Options,
    pub out: Box<dyn Write + 'a>,
    next_refresh: Instant,
    next_sample: Instant,
    watched: HashSet<(IpAddr, u16)>,
    /// Problems met while running (sampling, writing), reported once at the end.
    pub warnings: Vec<String>,
    /// Where the latest metrics are published, and the kernel counters they include.
    pub metrics: Option<crate::metrics::MetricsServer>,
    pub drops: Option<Arc<std::sync::Mutex<Option<crate::source::DropStats>>>>,
    /// The interface (`lo` has its own way of counting, see [`crate::explain::kernel_counters`]).
    pub iface: String,
    /// Kernel drops shown at the last refresh, to tell when they grow.
    shown_drops: u64,
    packets: u64,
    /// DNAT translations from the host's conntrack table (read while sampling), to report a
    /// published port and its container as one backend.
    pub nat: Option<NatTable>,
    next_nat: Instant,
}

impl<'a> Live<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sampler: Option<Box<dyn HostSampler + 'a>>,
        csv: Option<Box<dyn Write + 'a>>,
        stop: Arc<AtomicBool>,
        refresh: Duration,
        view: View,
        opts: Options,
        out: Box<dyn Write + 'a>,
    ) -> Self {
        let now = Instant::now();
        Live {
            backends: Backends::new(),
            host: HostSamples::default(),
            sampler,
            csv,
            stop,
            refresh,
            sample_every: Duration::from_secs(1),
            view,
            opts,
            out,
            next_refresh: now + refresh,
            next_sample: now,
            watched: HashSet::new(),
            warnings: Vec::new(),
            metrics: None,
            drops: None,
            iface: String::new(),
            shown_drops: 0,
            packets: 0,
            nat: None,
            next_nat: now,
        }
    }

    /// Starts sampling servers on this host that the traffic shows as backends: in hcleak's own
    /// network namespace or any other (containers), which the sampler finds by address and port.
    fn watch_new_backends(&mut self, table: &FlowTable) {
        let Some(s) = self.sampler.as_mut() else { return };
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
    pub fn sample_now(&mut self) {
        let Some(s) = self.sampler.as_mut() else { return };
        for (spec, x) in s.sample(now_ts()) {
            if let Some(w) = self.csv.as_mut() {
                if let Err(e) = writeln!(w, "{}", sockets::csv_row(&spec, &x)).and_then(|_| w.flush()) {
                    self.warnings.push(format!("writing samples: {e}"));
                    self.csv = None;
                }
            }
            self.host.push(spec, x);
        }
    }

    pub fn report(&self) -> verdict::Report {
        match &self.nat {
            Some(n) if n.readable == Some(true) => {
                let (b, joined) = n.join(&self.backends);
                let mut r = verdict::judge(&b, Some(&self.host), &self.opts);
                nat::annotate(&mut r, &joined);
                r
            }
            // No conntrack to ask: say which backends may be one.
            _ => {
                let mut r = verdict::judge(&self.backends, Some(&self.host), &self.opts);
                nat::maybe_one(&mut r);
                r
            }
        }
    }

    /// Reads the conntrack table, at most once a second.
    pub fn read_nat(&mut self) {
        let now = Instant::now();
        if let Some(n) = self.nat.as_mut().filter(|_| now >= self.next_nat) {
            self.next_nat = now + Duration::from_secs(1);
            n.read(std::path::Path::new("/proc"));
        }
    }

    /// Publishes the current report to the metrics endpoint, if any.
    pub fn publish_metrics(&self, r: &verdict::Report) {
        if let Some(m) = &self.metrics {
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
        (always || grew).then(|| crate::explain::kernel_counters(&self.iface, stats.frames, &d, grew))
    }

    fn refresh_view(&mut self, stats: &DecodeStats) {
        let r = self.report();
        let counters = match self.view {
            View::Screen => self.counters_line(stats, true),
            View::Lines => self.counters_line(stats, false),
            View::Jsonl | View::Quiet => None,
        };
        let res = match self.view {
            View::Quiet => Ok(()),
            View::Screen => write!(self.out, "\x1b[2J\x1b[H")
                .and_then(|_| render::report_table(&mut self.out, &r, stats))
                .and_then(|_| counters.map_or(Ok(()), |c| writeln!(self.out, "{c}")))
                .and_then(|_| self.out.flush()),
            View::Lines => render::report_lines(&mut self.out, &r, now_ts())
                .and_then(|_| counters.map_or(Ok(()), |c| writeln!(self.out, "{c}")))
                .and_then(|_| self.out.flush()),
            View::Jsonl => render::report_jsonl(&mut self.out, &r, "backend", now_ts()),
        };
        if let Err(e) = res {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                self.stop.store(true, Ordering::Relaxed);
            }
            self.view = View::Quiet;
        }
    }
}

impl Consumer for Live<'_> {
    fn conn(&mut self, c: Conn) {
        if self.view == View::Jsonl {
            let label = crate::classify::flow_label(&c);
            if render::conn_jsonl(&mut self.out, &c, label).and_then(|_| self.out.flush()).is_err() {
                self.view = View::Quiet;
            }
        }
        self.backends.add(&c);
    }

    fn tick_due(&mut self) -> bool {
        let now = Instant::now();
        now >= self.next_sample || now >= self.next_refresh
    }

    fn tick(&mut self, table: &mut FlowTable, stats: &DecodeStats) -> bool {
        let now = Instant::now();
        if now >= self.next_sample {
            self.next_sample = now + self.sample_every;
            // Packet time stands still on an idle interface: sweep by the wall clock.
            let mut done = Vec::new();
            table.sweep(now_ts(), &mut |c| done.push(c));
            for c in done {
                self.conn(c);
            }
            self.read_nat();
            self.watch_new_backends(table);
            self.sample_now();
            self.packets = stats.frames;
            if self.metrics.is_some() {
                let r = self.report();
                self.publish_metrics(&r);
            }
        }
        if now >= self.next_refresh {
            self.next_refresh = now + self.refresh;
            self.refresh_view(stats);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::FlowConfig;
    use crate::source::DropStats;
    use std::sync::Mutex;

    /// A writer whose bytes the test can read while the view still holds it.
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

    #[test]
    fn the_line_view_prints_kernel_drops_when_they_grow_with_a_hint() {
        let out = Shared::default();
        let counters = Arc::new(Mutex::new(Some(DropStats { received: 100, dropped_kernel: 0, dropped_iface: 0 })));
        let mut live = Live::new(
            None,
            None,
            Arc::default(),
            Duration::ZERO,
            View::Lines,
            Options::default(),
            Box::new(out.clone()),
        );
        live.drops = Some(Arc::clone(&counters));
        live.iface = "eth0".into();
        let mut table = FlowTable::new(FlowConfig::default());
        let stats = DecodeStats { frames: 100, ..DecodeStats::default() };
        assert!(live.tick(&mut table, &stats));
        assert!(!out.take().contains("dropped by kernel"), "no drops, no line");
        *counters.lock().unwrap() = Some(DropStats { received: 300, dropped_kernel: 7, dropped_iface: 0 });
        live.tick(&mut table, &stats);
        let text = out.take();
        assert!(text.contains("7 dropped by kernel") && text.contains("-B, in KiB"), "{text}");
        // Not grown since: not repeated.
        live.tick(&mut table, &stats);
        assert!(!out.take().contains("dropped by kernel"));
    }
}
