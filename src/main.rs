//! The `hcleak` binary: parses arguments, wires the stages, and turns the result into an exit code
//! (0 no leak, 1 suspicious, 2 leak, 3 could not decide or error) in one place.
#![forbid(unsafe_code)]

use clap::{CommandFactory, Parser};
use hcleak::backend::Backends;
use hcleak::classify;
use hcleak::cli::{AnalyzeConfig, CaptureArgs, Cli, Cmd, ProbeArgs, ProbeFormat, SampleArgs};
use hcleak::flow::{Conn, FlowConfig, FlowTable};
use hcleak::live::{self, Live, View};
use hcleak::metrics::MetricsListener;
use hcleak::output::Output;
use hcleak::pipeline::{self, Consumer, DecodeStats};
use hcleak::privs;
use hcleak::render::{self, Format};
use hcleak::sampler::{HostSampler, ProcSampler, Procfs};
use hcleak::sockets::{self, HostSamples};
use hcleak::source::{self, LiveOptions, LiveSource, StopWhen};
use hcleak::verdict::{self, Verdict};
use std::io::{self, IsTerminal, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exit codes on-call already scripts against (the Nagios convention).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    Ok = 0,
    Suspicious = 1,
    Leak = 2,
    Unknown = 3,
}

impl From<Verdict> for Exit {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Ok => Exit::Ok,
            Verdict::Suspicious => Exit::Suspicious,
            Verdict::Leak => Exit::Leak,
            Verdict::Unknown => Exit::Unknown,
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            // Help and version go to stdout with 0; usage errors are one line and exit 3, not
            // "leak" (clap's 2).
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::from(Exit::Ok as u8);
            }
            eprintln!("{}", usage_line(&e));
            return ExitCode::from(Exit::Unknown as u8);
        }
    };
    let result = match cli.cmd {
        Cmd::Analyze(a) => a.validate().map_err(Failure::Usage).and_then(|cfg| analyze(&cfg)),
        Cmd::Capture(c) => capture(&c),
        Cmd::Sample(s) => sample(&s),
        Cmd::Completions { shell } => {
            // clap_complete panics when its writer fails: write to memory, then to stdout, so a
            // closed pipe (`| head`) ends quietly.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "hcleak", &mut script);
            io::stdout().lock().write_all(&script).map(|()| Exit::Ok).map_err(Failure::from)
        }
        Cmd::Man => man(),
        Cmd::Probe(p) => probe(&p),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(Failure::Pipe) => ExitCode::from(Exit::Ok as u8),
        Err(f) => {
            eprintln!("hcleak: {f}");
            ExitCode::from(Exit::Unknown as u8)
        }
    }
}

/// clap's error as one line: which subcommand, what is wrong, where to look.
fn usage_line(e: &clap::Error) -> String {
    let sub = std::env::args().skip(1).find(|a| Cli::command().get_subcommands().any(|s| s.get_name() == a));
    let who = sub.as_deref().map_or("hcleak".to_string(), |s| format!("hcleak {s}"));
    // clap's first paragraph says what is wrong (a list of missing arguments continues it on
    // further lines); usage and tips follow after a blank line.
    let text = e.render().to_string();
    let what = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect::<Vec<_>>().join(" ");
    let first = what.strip_prefix("error: ").unwrap_or(&what);
    let first = if first.is_empty() { "bad arguments" } else { first };
    if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return format!("{who}: a subcommand is required; `{who} --help` lists them");
    }
    format!("{who}: {first}; `{who} --help` lists the options")
}

/// The man page, from the same definitions as the parser: `hcleak man > hcleak.1`.
fn man() -> Result<Exit, Failure> {
    let cmd = Cli::command();
    let mut out = io::stdout().lock();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    // One section per subcommand with its synopsis and options (their own headings one level down),
    // so every option is in the page.
    for sub in cmd.get_subcommands().filter(|s| s.get_arguments().any(|a| !a.is_hide_set())) {
        let name = sub.get_name().to_string();
        let man = clap_mangen::Man::new(sub.clone().bin_name(format!("hcleak {name}")));
        let mut part = Vec::new();
        man.render_synopsis_section(&mut part)?;
        man.render_options_section(&mut part)?;
        let part = String::from_utf8_lossy(&part).replace(".SH ", ".SS ");
        writeln!(out, ".SH \"HCLEAK {}\"", name.to_uppercase())?;
        if let Some(about) = sub.get_about() {
            writeln!(out, "{about}")?;
        }
        out.write_all(part.as_bytes())?;
    }
    Ok(Exit::Ok)
}

/// A run that could not produce a verdict. Rendered as one line on stderr.
#[derive(Debug)]
enum Failure {
    Usage(String),
    Source(source::SourceError),
    Io(io::Error),
    /// stdout was closed (`| head`): end quietly.
    Pipe,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(s) => f.write_str(s),
            Failure::Source(e) => write!(f, "{e}"),
            Failure::Io(e) => write!(f, "writing output: {e}"),
            Failure::Pipe => f.write_str("output closed"),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Failure::Pipe
        } else {
            Failure::Io(e)
        }
    }
}

/// Where `analyze` sends finished connections: rows, a summary, or the diagnosis.
struct AnalyzeSink<'a> {
    cfg: &'a AnalyzeConfig,
    out: &'a mut dyn Write,
    summary: render::FlowSummary,
    zeek: render::ZeekLog,
    backends: Backends,
    write_err: Option<io::Error>,
    progress: Option<indicatif::ProgressBar>,
}

impl Consumer for AnalyzeSink<'_> {
    fn conn(&mut self, c: Conn) {
        if self.write_err.is_some() {
            return;
        }
        let r = match (self.cfg.flows, self.cfg.format) {
            (true, Format::Tsv) => render::flow_tsv(self.out, &c, classify::flow_label(&c)),
            (true, Format::Zeek) => self.zeek.row(self.out, &c, classify::flow_label(&c)),
            (true, Format::Json) => render::flow_json(self.out, &c, classify::flow_label(&c)),
            (true, Format::Jsonl) => render::conn_jsonl(self.out, &c, classify::flow_label(&c)),
            (true, Format::Table | Format::Nagios) => {
                self.summary.add(&c);
                Ok(())
            }
            (false, _) => {
                self.backends.add(&c);
                Ok(())
            }
        };
        if let Err(e) = r {
            self.write_err = Some(e);
        }
    }

    fn keep_going(&mut self, _: &DecodeStats) -> bool {
        self.write_err.is_none()
    }

    fn tick(&mut self, _: &mut FlowTable, stats: &DecodeStats) -> bool {
        if let Some(p) = &self.progress {
            p.set_position(stats.input.0);
        }
        true
    }
}

fn progress_bar(total: u64) -> Option<indicatif::ProgressBar> {
    // Only for people watching a big file: never in pipes, logs or tests.
    if total < 64 << 20 || !io::stderr().is_terminal() {
        return None;
    }
    let p = indicatif::ProgressBar::new(total);
    p.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(p)
}

fn analyze(cfg: &AnalyzeConfig) -> Result<Exit, Failure> {
    // Read the samples first: a bad samples file should fail before minutes of packet reading.
    let host = match &cfg.sockets {
        Some(p) => Some(sockets::read_csv(p).map_err(|e| Failure::Usage(e.to_string()))?),
        None => None,
    };
    // And the conntrack table: a published port and its container become one backend.
    let nat = match &cfg.conntrack {
        Some(p) => {
            let bytes = std::fs::read(p).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => Failure::Usage(format!("{}: no such file", p.display())),
                _ => Failure::Usage(format!("{}: {e}", p.display())),
            })?;
            let text = String::from_utf8_lossy(&bytes);
            Some(hcleak::nat::NatTable { seen: hcleak::nat::parse_conntrack(&text), readable: Some(true) })
        }
        None => None,
    };
    // The plot's file too: a path that cannot be written fails before the reading, not after.
    let mut plot = match &cfg.plot {
        Some(p) => Some(Output::create(p, cfg.force).map_err(Failure::Usage)?),
        None => None,
    };
    // `tcpdump -w - | hcleak analyze -r -`: Ctrl-C reaches both; tcpdump ends its file and hcleak
    // reports on what came. A second Ctrl-C ends hcleak at once.
    if cfg.files.iter().any(|p| p.as_os_str() == "-") {
        stop_flag()?;
    }
    let mut src = source::open_files(&cfg.files, cfg.filter.as_deref()).map_err(Failure::Source)?;
    let mut table = FlowTable::new(FlowConfig { max_flows: cfg.max_flows, ..FlowConfig::default() });
    let mut stats = DecodeStats::default();
    let mut errors = Vec::new();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    // Zeek draws uids at random: seeded by the clock and the process, two runs' logs can be merged.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let zeek = render::ZeekLog::new(now ^ u64::from(std::process::id()) << 40);
    if cfg.flows && cfg.format == Format::Tsv {
        render::flow_tsv_header(&mut out)?;
    }
    if cfg.flows && cfg.format == Format::Zeek {
        zeek.header(&mut out)?;
    }
    let mut sink = AnalyzeSink {
        cfg,
        out: &mut out,
        summary: render::FlowSummary::default(),
        zeek,
        backends: Backends::new(),
        write_err: None,
        progress: progress_bar(src.progress().1),
    };
    if cfg.threads > 1 {
        pipeline::run_threaded(src.as_mut(), &mut table, &mut stats, &mut errors, &mut sink);
    } else {
        pipeline::run(src.as_mut(), &mut table, &mut stats, &mut errors, &mut sink);
    }
    table.finish(&mut |c| sink.conn(c));
    if let Some(p) = sink.progress.take() {
        p.finish_and_clear();
    }
    if let Some(e) = sink.write_err.take() {
        return Err(e.into());
    }
    if cfg.flows && cfg.format == Format::Zeek {
        sink.zeek.close(&mut *sink.out)?;
    }
    let (summary, backends) = (sink.summary, sink.backends);
    let mut code = Exit::Ok;
    if cfg.flows {
        if cfg.format == Format::Table {
            render::flow_summary(&mut out, &summary, &stats, cfg.files.len())?;
        }
    } else {
        let opts = verdict::Options { limit: cfg.limit, min_conns: cfg.min_conns };
        let report = match &nat {
            Some(n) => {
                let (joined_backends, joined) = n.join(&backends);
                let mut r = verdict::judge(&joined_backends, host.as_ref(), &opts);
                hcleak::nat::annotate(&mut r, &joined);
                r
            }
            None => {
                // No conntrack table given: say which backends may be one behind DNAT.
                let mut r = verdict::judge(&backends, host.as_ref(), &opts);
                hcleak::nat::maybe_one(&mut r);
                r
            }
        };
        let mut report = report;
        if !errors.is_empty() {
            report.cut_short(stats.last_ts);
        }
        if let Some(c) = report.host_coverage.as_ref().filter(|c| c.is_short()) {
            eprintln!("hcleak: {}", hcleak::explain::coverage(c));
        }
        render::report(&mut out, cfg.format, &report, &stats, stats.last_ts.unwrap_or(0))?;
        if let Some(mut o) = plot.take() {
            let path = o.path().to_path_buf();
            write_plot(o.file(), &path, &report)?;
            o.commit().map_err(Failure::Usage)?;
        }
        code = report.verdict.into();
    }
    out.flush()?;
    if let Some(f) = cfg.filter.as_deref().filter(|_| stats.tcp == 0) {
        if hcleak::tunnel::overlay_in_files(&cfg.files) {
            eprintln!("hcleak: {}", hcleak::tunnel::hint(f));
        }
    }
    for e in &errors {
        eprintln!("hcleak: {e}");
    }
    // A filter that kept nothing: say why when tags or tunnels explain it (standard input is gone).
    if let (Some(f), 0, true) = (&cfg.filter, stats.frames, errors.is_empty()) {
        if cfg.files.iter().all(|p| p.as_os_str() != "-") {
            if let Some(hint) =
                source::encapsulation(&cfg.files, 10_000).ok().and_then(|e| source::empty_filter_hint(f, &e))
            {
                eprintln!("hcleak: {hint}");
            }
        }
    }
    // A damaged input means the verdict may be missing what came after the damage.
    Ok(if errors.is_empty() { code } else { Exit::Unknown })
}

/// Draws the report into an output file opened earlier (see `output`).
fn write_plot(f: &mut std::fs::File, path: &Path, r: &verdict::Report) -> Result<(), Failure> {
    let svg = hcleak::plot::svg(r).map_err(|e| Failure::Usage(format!("drawing {}: {e}", path.display())))?;
    f.write_all(svg.as_bytes())
        .and_then(|_| f.flush())
        .map_err(|e| Failure::Usage(format!("cannot write {}: {e}", path.display())))
}

/// SIGINT and SIGTERM set the flag; a second one ends the process at once.
fn stop_flag() -> Result<Arc<AtomicBool>, Failure> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&stop)))
            .map_err(|e| Failure::Usage(format!("cannot install signal handlers: {e}")))?;
    }
    Ok(stop)
}

/// The host sampler and where its samples are also written.
type Sampling = (Option<Box<dyn HostSampler>>, Option<Box<dyn Write>>);

fn capture(a: &CaptureArgs) -> Result<Exit, Failure> {
    if a.list_interfaces {
        let stdout = io::stdout();
        let mut out = stdout.lock();
        for (i, (name, desc)) in source::list_interfaces().map_err(Failure::Source)?.into_iter().enumerate() {
            match desc {
                Some(d) => writeln!(out, "{}.{name} ({d})", i + 1)?,
                None => writeln!(out, "{}.{name}", i + 1)?,
            }
        }
        return Ok(Exit::Ok);
    }
    // 1. Every argument, before anything is opened or written.
    let iface = a.iface.clone().ok_or_else(|| Failure::Usage("-i IFACE is required".into()))?;
    let snaplen = a.snaplen().map_err(Failure::Usage)?;
    let buffer = a.buffer_bytes().map_err(Failure::Usage)?;
    let pcap_to_stdout = a.write.as_deref() == Some(Path::new("-"));
    if pcap_to_stdout && io::stdout().is_terminal() {
        return Err(Failure::Usage(
            "-w - writes binary pcap to standard output, which is a terminal: redirect it".into(),
        ));
    }
    let metrics_addr = a.metrics.as_deref().map(hcleak::metrics::bind_addr).transpose().map_err(Failure::Usage)?;
    let sampling = !a.no_sample;
    // -Z is resolved now, root or not: an unknown user stops the run before anything is opened.
    let target = privs::target(a.user.as_deref()).map_err(Failure::Usage)?;
    // 2. Outputs, under temporary names beside their own: nothing that exists is touched yet.
    let csv_path = a.write.as_ref().filter(|_| sampling && !pcap_to_stdout).map(|p| {
        let mut s = p.clone().into_os_string();
        s.push(".sockets.csv");
        std::path::PathBuf::from(s)
    });
    let pcap_out = match &a.write {
        Some(p) if !pcap_to_stdout => Some(Output::create(p, a.force).map_err(Failure::Usage)?),
        _ => None,
    };
    let csv_out = csv_path.map(|p| Output::create(&p, a.force)).transpose().map_err(Failure::Usage)?;
    let plot_out = a.plot.as_ref().map(|p| Output::create(p, a.force)).transpose().map_err(Failure::Usage)?;
    // 3. The metrics port (served only after the privilege drop).
    let listener = metrics_addr.map(MetricsListener::bind).transpose().map_err(Failure::Usage)?;
    let stop = stop_flag()?;
    // 4. The capture: the one thing that needs CAP_NET_RAW.
    let filter = (!a.filter.is_empty()).then(|| a.filter.join(" "));
    let opts = LiveOptions { iface: iface.clone(), filter, snaplen, buffer, promisc: !a.no_promisc };
    // A large ring takes a moment to set up: say what it costs and when the capture really starts.
    eprintln!("hcleak: {}", hcleak::explain::ring_cost(buffer as u64, snaplen as u64));
    let mut src = LiveSource::open(&opts).map_err(Failure::Source)?;
    // With a filter, a watch for overlay packets it would hide (opened while we may still).
    let mut overlay_watch = opts.filter.as_ref().and_then(|_| hcleak::tunnel::LiveWatch::open(&iface));
    eprintln!("hcleak: listening on {iface}, link-type {}, snapshot length {snaplen} bytes", src.link_name());
    // The source stops taking packets on a signal, the deadline or the count, then drains what
    // the kernel already holds; the pipeline ends when it does.
    src.stop_when(StopWhen {
        flag: Arc::clone(&stop),
        deadline: a.duration.map(|d| Instant::now() + d),
        count: a.count,
    });
    // 5. Everything is open and checked: put the outputs in place while the directory is still
    // writable to us, then give up root, keeping only what sampling needs.
    let pcap_file = match pcap_out {
        Some(o) => Some(o.commit().map_err(Failure::Usage)?),
        None if pcap_to_stdout => Some(std::fs::File::from(io::stdout().as_fd().try_clone_to_owned()?)),
        None => None,
    };
    let csv_file = csv_out.map(Output::commit).transpose().map_err(Failure::Usage)?;
    let mut plot_file = match plot_out {
        Some(o) => {
            let path = o.path().to_path_buf();
            Some((path, o.commit().map_err(Failure::Usage)?))
        }
        None => None,
    };
    if let Some(f) = pcap_file {
        src.write_to(f).map_err(Failure::Source)?;
    }
    let keep: &[caps::Capability] = if sampling { &privs::SAMPLER_CAPS } else { &[] };
    let dropped = match &target {
        Some(t) => privs::drop_root(t, keep),
        None => privs::drop_caps(keep),
    };
    eprintln!("hcleak: {}", dropped.map_err(Failure::Usage)?);
    let (sampler, csv): Sampling = if sampling {
        let csv: Option<Box<dyn Write>> = match csv_file {
            Some(f) => {
                let mut f = io::BufWriter::new(f);
                writeln!(f, "{}", sockets::CSV_HEADER)?;
                Some(Box::new(f))
            }
            None => None,
        };
        (Some(Box::new(ProcSampler::default())), csv)
    } else {
        (None, None)
    };
    // With the pcap on standard output, everything else goes to standard error (as tcpdump does).
    let report_out = || -> Box<dyn Write> {
        if pcap_to_stdout {
            Box::new(io::stderr())
        } else {
            Box::new(io::stdout())
        }
    };
    let on_terminal = if pcap_to_stdout { io::stderr().is_terminal() } else { io::stdout().is_terminal() };
    let format: Format = a.format.into();
    let view = match (format, on_terminal) {
        // A JSON document or a Nagios line on stdout must stay just that.
        (Format::Json | Format::Nagios, _) => View::Quiet,
        (Format::Jsonl, _) => View::Jsonl,
        (_, true) => View::Screen,
        (_, false) => View::Lines,
    };
    let vopts = verdict::Options { limit: a.limit, min_conns: a.min_conns };
    let mut live = Live::new(sampler, csv, Arc::clone(&stop), a.refresh, view, vopts, report_out());
    live.iface = iface.clone();
    live.sample_every = a.sample_interval.unwrap_or(Duration::from_secs(1)).max(Duration::from_millis(50));
    live.drops = Some(src.counters());
    if sampling {
        live.nat = Some(hcleak::nat::NatTable::default());
    }
    if let Some(l) = listener {
        let m = l.start().map_err(Failure::Usage)?;
        eprintln!("hcleak: serving metrics at http://{}/metrics", m.addr);
        live.metrics = Some(m);
    }
    let mut table = FlowTable::new(FlowConfig::default());
    let mut stats = DecodeStats::default();
    let mut errors = Vec::new();
    // One thread reads, decodes and writes -w; this one tracks flows, samples, serves the view and
    // the metrics, so none of those ever holds up the reading.
    pipeline::run_threaded(&mut src, &mut table, &mut stats, &mut errors, &mut live);
    // Stopped: finish what is open, take a last sample, report.
    if let Err(e) = src.flush() {
        live.warnings.push(e.to_string());
    }
    table.finish(&mut |c| live.conn(c));
    live.sample_now();
    live.read_nat();
    let report = live.report();
    // The plot first: its file was opened before the privilege drop, so this cannot be refused,
    // and a closed report pipe does not lose it.
    if let Some((p, f)) = &mut plot_file {
        if let Err(e) = write_plot(f, p, &report) {
            live.warnings.push(e.to_string());
        }
    }
    let mut out = io::BufWriter::new(report_out());
    if view == View::Screen {
        write!(out, "\x1b[2J\x1b[H")?;
    }
    let kernel = src.drops();
    stats.kernel = kernel;
    render::report(&mut out, format, &report, &stats, live::now_ts())?;
    out.flush()?;
    if let Some(d) = kernel {
        eprintln!("hcleak: {}", hcleak::explain::kernel_counters(&iface, stats.frames, &d, d.dropped_kernel > 0));
    }
    if let Some(f) = opts.filter.as_deref().filter(|_| stats.tcp == 0) {
        if overlay_watch.as_mut().is_some_and(|w| w.seen()) {
            eprintln!("hcleak: {}", hcleak::tunnel::hint(f));
        }
    }
    for w in &live.warnings {
        eprintln!("hcleak: {w}");
    }
    if let Some(e) = errors.first() {
        eprintln!("hcleak: {e}");
        return Ok(Exit::Unknown);
    }
    Ok(report.verdict.into())
}

/// The one server a `sample --port` means; several (pods in different namespaces on the same
/// port) need `--addr` or `--pid` to choose.
fn one_server(mut found: Vec<hcleak::sampler::Server>, port: u16) -> Result<Option<hcleak::sampler::Server>, Failure> {
    if found.len() > 1 {
        let list: Vec<String> = found
            .iter()
            .map(|s| match s.addr {
                Some(ip) => format!("pid {} at {}", s.pid, sockets::BackendSpec::Exact(ip, port)),
                None => format!("pid {}", s.pid),
            })
            .collect();
        return Err(Failure::Usage(format!(
            "{} processes listen on TCP port {port} ({}): choose one with --addr IP or --pid PID",
            found.len(),
            list.join(", ")
        )));
    }
    Ok(found.pop())
}

fn sample(a: &SampleArgs) -> Result<Exit, Failure> {
    // -Z and the output are checked first; the output is put in place once the server is found.
    let target = privs::target(a.user.as_deref()).map_err(Failure::Usage)?;
    let output = a.output.as_ref().map(|p| Output::create(p, a.force)).transpose().map_err(Failure::Usage)?;
    let stop = stop_flag()?;
    let proc = Procfs::default();
    let server = match a.pid {
        Some(_) => proc.find_server(a.port, a.pid),
        None => {
            // --addr may be a load balancer's name for the backend, held by no namespace here.
            let mut found = proc.find_servers(a.addr, a.port);
            if found.is_empty() && a.addr.is_some() {
                found = proc.find_servers(None, a.port);
            }
            one_server(found, a.port)?
        }
    };
    let server = server.ok_or_else(|| {
        Failure::Usage(match a.pid {
            Some(p) => {
                format!("process {p} does not listen on port {} (or /proc/{p} is not readable: run as root)", a.port)
            }
            None => format!(
                "no process on this host listens on TCP port {} in any network namespace (or its /proc/PID/fd is not readable: run as root)",
                a.port
            ),
        })
    })?;
    let mut out: Box<dyn Write> = match output {
        Some(o) => Box::new(io::BufWriter::new(o.commit().map_err(Failure::Usage)?)),
        None => Box::new(io::stdout()),
    };
    // Sampling goes on as the unprivileged user with the two capabilities it needs, nothing else.
    let dropped = match &target {
        Some(t) => privs::drop_root(t, &privs::SAMPLER_CAPS),
        None => privs::drop_caps(&privs::SAMPLER_CAPS),
    };
    eprintln!("hcleak: {}", dropped.map_err(Failure::Usage)?);
    writeln!(out, "{}", sockets::CSV_HEADER)?;
    let deadline = a.duration.map(|d| Instant::now() + d);
    let mut samples = HostSamples::default();
    let mut server = server;
    let label = |s: &hcleak::sampler::Server| match a.addr {
        Some(ip) => sockets::BackendSpec::Exact(ip, s.port),
        None => s.spec(),
    };
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) && deadline.is_none_or(|d| Instant::now() < d) {
        match proc.sample(&server, live::now_ts()) {
            Ok(x) => {
                writeln!(out, "{}", sockets::csv_row(&label(&server), &x))?;
                out.flush()?;
                samples.push(label(&server), x);
            }
            // Restarted: follow the new process on the same port.
            Err(_) => {
                if let Some(s) = proc.find_servers(server.seen_as.or(server.addr), a.port).into_iter().next() {
                    server = s;
                    continue;
                }
            }
        }
        next += a.interval;
        // Sleep in short steps so a signal stops us at once.
        while Instant::now() < next && !stop.load(Ordering::Relaxed) {
            std::thread::sleep((next - Instant::now()).min(Duration::from_millis(50)));
        }
    }
    let n: usize = samples.backends.iter().map(|(_, v)| v.len()).sum();
    eprintln!("hcleak: {n} samples of pid {} (port {})", server.pid, a.port);
    Ok(Exit::Ok)
}

fn probe(a: &ProbeArgs) -> Result<Exit, Failure> {
    use hcleak::probe::{self, Counter};
    let cfg = a.validate().map_err(Failure::Usage)?;
    let target = privs::target(a.user.as_deref()).map_err(Failure::Usage)?;
    let stop = stop_flag()?;
    // The socket counts: a samples file from the server's host, or the server on this host.
    let ip = cfg.addr.ip();
    let local = ip.is_loopback() || source::local_addresses().contains(&ip);
    let mut counter = if a.no_sample {
        Counter::None
    } else if let Some(p) = &a.sockets {
        // Opened now, read as it grows (after the privilege drop, through this handle).
        let file = std::fs::File::open(p).map_err(|e| Failure::Usage(format!("{}: {e}", p.display())))?;
        // A FIFO or a device would block or never end: only a file that `hcleak sample` writes.
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err(Failure::Usage(format!("{}: not a regular file", p.display())));
        }
        Counter::File { file, path: p.clone(), port: cfg.addr.port(), ip, last: 0, error: None }
    } else {
        let proc = Procfs::default();
        let port = cfg.addr.port();
        let found = match a.pid {
            Some(pid) => proc.find_server(port, Some(pid)),
            None if local => proc.find_server(port, None),
            // Not one of this namespace's addresses: perhaps a container's on this host.
            None => proc.find_server_in_netns(ip, port),
        };
        match found {
            Some(server) => {
                // --pid names the one process to count; otherwise every process on the listener.
                let workers: Vec<u32> = match a.pid {
                    Some(_) => Vec::new(),
                    None => proc.pids_of_inode(server.listen_inode).into_iter().filter(|p| *p != server.pid).collect(),
                };
                if !workers.is_empty() {
                    eprintln!(
                        "hcleak: {} processes share the listener on port {port} (pids {}, {}): their sockets are counted together",
                        workers.len() + 1,
                        server.pid,
                        workers.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
                    );
                }
                Counter::Local { proc, server, workers, gone: false }
            }
            None if a.pid.is_some() => {
                return Err(Failure::Usage(format!(
                    "process {} does not listen on port {} (or /proc/PID is not readable: run as root)",
                    a.pid.unwrap_or(0),
                    cfg.addr.port()
                )))
            }
            None if local => {
                eprintln!(
                    "hcleak: no process on this host listens on TCP port {port} that can be read (run as root, or --pid PID for a server in another network namespace): judging without socket counts"
                );
                Counter::None
            }
            None => {
                eprintln!(
                    "hcleak: {} is not on this host (nor in a network namespace here that can be read) and no --sockets FILE was given: without socket counts only a server that stops answering can be seen",
                    cfg.target
                );
                Counter::None
            }
        }
    };
    let keep: &[caps::Capability] = if matches!(counter, Counter::Local { .. }) { &privs::SAMPLER_CAPS } else { &[] };
    let dropped = match &target {
        Some(t) => privs::drop_root(t, keep),
        None => privs::drop_caps(keep),
    };
    eprintln!("hcleak: {}", dropped.map_err(Failure::Usage)?);
    let report = probe::run(&cfg, &mut counter, &stop).map_err(Failure::Usage)?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match a.format {
        ProbeFormat::Table => hcleak::render::probe::table(&mut out, &report)?,
        ProbeFormat::Json => hcleak::render::probe::json(&mut out, &report)?,
        ProbeFormat::Nagios => hcleak::render::probe::nagios(&mut out, &report)?,
    }
    out.flush()?;
    Ok(report.verdict.into())
}
