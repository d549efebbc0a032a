//! The `hcleak` binary: parses arguments, wires the stages, and turns the result into an exit code
//! (0 no leak, 1 suspicious, 2 leak, 3 could not decide or error) in one place.
#![forbid(unsafe_code)]

use clap::{CommandFactory, Parser};
use hcleak::backend::Backends;
use hcleak::classify;
use hcleak::cli::{AnalyzeConfig, CaptureArgs, Cli, Cmd, SampleArgs};
use hcleak::flow::{Conn, FlowConfig, FlowTable};
use hcleak::live::{self, Live, View};
use hcleak::pipeline::{self, Consumer, DecodeStats};
use hcleak::render::{self, Format};
use hcleak::sampler::{HostSampler, ProcSampler, Procfs};
use hcleak::sockets::{self, HostSamples};
use hcleak::source::{self, LiveOptions, LiveSource};
use hcleak::verdict::{self, Verdict};
use std::io::{self, IsTerminal, Write};
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
        let report = verdict::judge(&backends, host.as_ref(), &opts);
        render::report(&mut out, cfg.format, &report, &stats, stats.last_ts.unwrap_or(0))?;
        if let Some(p) = &cfg.plot {
            write_plot(p, &report)?;
        }
        code = report.verdict.into();
    }
    out.flush()?;
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

fn write_plot(path: &Path, r: &verdict::Report) -> Result<(), Failure> {
    let svg = hcleak::plot::svg(r).map_err(|e| Failure::Usage(format!("drawing {}: {e}", path.display())))?;
    std::fs::write(path, svg).map_err(|e| Failure::Usage(format!("cannot write {}: {e}", path.display())))?;
    give_to_invoking_user(path);
    Ok(())
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

/// Creates a file for writing, refusing to clobber one unless asked, owned by the invoking user
/// when run through sudo.
fn create_output(path: &Path, force: bool) -> Result<std::fs::File, Failure> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true);
    if force {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    let f = o.open(path).map_err(|e| {
        Failure::Usage(if e.kind() == io::ErrorKind::AlreadyExists {
            format!("{} exists; pass --force to overwrite it", path.display())
        } else {
            format!("cannot write {}: {e}", path.display())
        })
    })?;
    give_to_invoking_user(path);
    Ok(f)
}

fn give_to_invoking_user(path: &Path) {
    let id = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u32>().ok());
    if let (Some(uid), Some(gid)) = (id("SUDO_UID"), id("SUDO_GID")) {
        let _ = nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid)));
    }
}

/// The host sampler and where its samples are also written.
type Sampling = (Option<Box<dyn HostSampler>>, Option<Box<dyn Write>>);

/// tcpdump's -Z: after the capture handle is open, give up root.
fn drop_privileges(user: &str) -> Result<String, String> {
    use nix::unistd::{getuid, setgid, setgroups, setuid, User};
    if !getuid().is_root() {
        return Ok("not running as root".into());
    }
    let u = User::from_name(user).map_err(|e| e.to_string())?.ok_or_else(|| format!("no user '{user}'"))?;
    setgroups(&[u.gid]).and_then(|_| setgid(u.gid)).and_then(|_| setuid(u.uid)).map_err(|e| e.to_string())?;
    Ok(format!("dropped root, running as {user}"))
}

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
    let iface = a.iface.clone().ok_or_else(|| Failure::Usage("-i IFACE is required".into()))?;
    if a.snaplen < 64 {
        return Err(Failure::Usage("-s must be at least 64 bytes".into()));
    }
    let stop = stop_flag()?;
    // Refuse to clobber before opening anything.
    let csv_path = a.write.as_ref().map(|p| {
        let mut s = p.clone().into_os_string();
        s.push(".sockets.csv");
        std::path::PathBuf::from(s)
    });
    if let (Some(p), false) = (&a.write, a.force) {
        for q in [Some(p), csv_path.as_ref()].into_iter().flatten() {
            if q.exists() {
                return Err(Failure::Usage(format!("{} exists; pass --force to overwrite it", q.display())));
            }
        }
    }
    let filter = (!a.filter.is_empty()).then(|| a.filter.join(" "));
    let opts = LiveOptions {
        iface: iface.clone(),
        filter,
        snaplen: a.snaplen,
        buffer: a.buffer_mib.saturating_mul(1 << 20),
        write: a.write.clone(),
    };
    let mut src = LiveSource::open(&opts).map_err(Failure::Source)?;
    if let Some(p) = &a.write {
        give_to_invoking_user(p);
    }
    let local = source::local_addresses();
    let (sampler, csv): Sampling = if a.no_sample {
        let user = a.user.as_deref().unwrap_or("nobody");
        match drop_privileges(user) {
            Ok(msg) => eprintln!("hcleak: {msg}"),
            Err(e) => eprintln!("hcleak: could not drop privileges to '{user}': {e}; continuing"),
        }
        (None, None)
    } else {
        if nix::unistd::getuid().is_root() {
            eprintln!(
                "hcleak: keeping root to read other processes' /proc/PID/fd for host sampling (--no-sample drops to 'nobody' after opening the capture)"
            );
        }
        let csv: Option<Box<dyn Write>> = match &csv_path {
            Some(p) => {
                let mut f = io::BufWriter::new(create_output(p, a.force)?);
                writeln!(f, "{}", sockets::CSV_HEADER)?;
                Some(Box::new(f))
            }
            None => None,
        };
        (Some(Box::new(ProcSampler::default())), csv)
    };
    let format: Format = a.format.into();
    let view = match (format, io::stdout().is_terminal()) {
        // A JSON document or a Nagios line on stdout must stay just that.
        (Format::Json | Format::Nagios, _) => View::Quiet,
        (Format::Jsonl, _) => View::Jsonl,
        (_, true) => View::Screen,
        (_, false) => View::Lines,
    };
    let deadline = a.duration.map(|d| Instant::now() + d);
    let vopts = verdict::Options { limit: a.limit, min_conns: a.min_conns };
    let mut live = Live::new(
        sampler,
        csv,
        local,
        Arc::clone(&stop),
        deadline,
        a.count,
        a.refresh,
        view,
        vopts,
        Box::new(io::stdout()),
    );
    live.sample_every = a.sample_interval.unwrap_or(Duration::from_secs(1)).max(Duration::from_millis(50));
    live.drops = Some(src.counters());
    if let Some(spec) = &a.metrics {
        let addr = hcleak::metrics::bind_addr(spec).map_err(Failure::Usage)?;
        let m = hcleak::metrics::MetricsServer::start(addr).map_err(Failure::Usage)?;
        eprintln!("hcleak: serving metrics at http://{}/metrics", m.addr);
        live.metrics = Some(m);
    }
    let mut table = FlowTable::new(FlowConfig::default());
    let mut stats = DecodeStats::default();
    let mut errors = Vec::new();
    pipeline::run(&mut src, &mut table, &mut stats, &mut errors, &mut live);
    // Stopped: finish what is open, take a last sample, report.
    let _ = src.flush();
    table.finish(&mut |c| live.conn(c));
    live.sample_now();
    let report = live.report();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    if view == View::Screen {
        write!(out, "\x1b[2J\x1b[H")?;
    }
    render::report(&mut out, format, &report, &stats, live::now_ts())?;
    out.flush()?;
    if let Some(p) = &a.plot {
        write_plot(p, &report)?;
    }
    if let Some(d) = src.drops() {
        eprintln!(
            "hcleak: {} packets captured, {} received by filter, {} dropped by kernel, {} dropped by interface",
            stats.frames, d.received, d.dropped_kernel, d.dropped_iface
        );
    }
    for w in &live.warnings {
        eprintln!("hcleak: {w}");
    }
    if let Some(e) = errors.first() {
        eprintln!("hcleak: {e}");
        return Ok(Exit::Unknown);
    }
    let _ = stop.load(Ordering::Relaxed);
    Ok(report.verdict.into())
}

fn sample(a: &SampleArgs) -> Result<Exit, Failure> {
    let stop = stop_flag()?;
    let proc = Procfs::default();
    let server = proc.find_server(a.port, a.pid).ok_or_else(|| {
        Failure::Usage(match a.pid {
            Some(p) => {
                format!("process {p} does not listen on port {} (or /proc/{p} is not readable: run as root)", a.port)
            }
            None => format!(
                "no process on this host listens on TCP port {} (or its /proc/PID/fd is not readable: run as root)",
                a.port
            ),
        })
    })?;
    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(io::BufWriter::new(create_output(p, true)?)),
        None => Box::new(io::stdout()),
    };
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
                if let Some(s) = proc.find_server(a.port, None) {
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
