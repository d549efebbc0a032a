//! The `hcleak` binary: parse → validate into a per-subcommand config (`cli`) → one orchestration
//! function per subcommand, which opens the real sources and outputs, gives up privileges and hands
//! over to the library → the exit code, decided once in `main` from the run's verdict
//! ([`Verdict::exit_code`]: 0 no leak, 1 suspicious, 2 leak, 3 could not decide or error).
#![forbid(unsafe_code)]

use clap::{CommandFactory, Parser};
use hcleak::analyze;
use hcleak::capture::{Capture, Io};
use hcleak::cli::{AnalyzeConfig, CaptureConfig, Cli, Cmd, PcapOut, ProbeArgs, ProbeFormat, SampleConfig};
use hcleak::clock::{Clock, SystemClock};
use hcleak::flow::{FlowConfig, FlowTable};
use hcleak::metrics::MetricsListener;
use hcleak::output::Output;
use hcleak::pipeline::{self, Consumer, DecodeStats};
use hcleak::privs;
use hcleak::render::{self, Format};
use hcleak::sampler::{HostSampler, ProcSampler, Procfs};
use hcleak::sockets::{self, BackendSpec};
use hcleak::source::{self, LiveSource, StopWhen};
use hcleak::verdict::{self, Verdict};
use std::io::{self, IsTerminal, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            // Help and version go to stdout with 0; usage errors are one line and exit 3, not
            // "leak" (clap's 2).
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::from(Verdict::Ok.exit_code());
            }
            eprintln!("{}", usage_line(&e));
            return ExitCode::from(Verdict::Unknown.exit_code());
        }
    };
    // Every subcommand ends in a verdict (those that judge nothing: `Ok`) or a failure.
    let result = match cli.cmd {
        Cmd::Analyze(a) => a.validate().map_err(Failure::Usage).and_then(|cfg| analyze(&cfg)),
        Cmd::Capture(a) if a.list_interfaces => list_interfaces(),
        Cmd::Capture(a) => a.validate().map_err(Failure::Usage).and_then(|cfg| capture(&cfg)),
        Cmd::Sample(a) => a.validate().map_err(Failure::Usage).and_then(|cfg| sample(&cfg)),
        Cmd::Completions { shell } => completions(shell),
        Cmd::Man => man(),
        Cmd::Probe(p) => probe(&p),
    };
    let verdict = match result {
        Ok(v) => v,
        // A closed pipe (`| head`) ends quietly.
        Err(Failure::Pipe) => Verdict::Ok,
        Err(f) => {
            eprintln!("hcleak: {f}");
            Verdict::Unknown
        }
    };
    ExitCode::from(verdict.exit_code())
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
fn man() -> Result<Verdict, Failure> {
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
    Ok(Verdict::Ok)
}

/// A completion script for `shell` on stdout.
fn completions(shell: clap_complete::Shell) -> Result<Verdict, Failure> {
    // clap_complete panics when its writer fails: write to memory, then to stdout, so a closed
    // pipe (`| head`) ends quietly.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "hcleak", &mut script);
    io::stdout().lock().write_all(&script)?;
    Ok(Verdict::Ok)
}

/// `capture -D`: the interfaces libpcap can open.
fn list_interfaces() -> Result<Verdict, Failure> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    for (i, (name, desc)) in source::list_interfaces().map_err(Failure::Source)?.into_iter().enumerate() {
        match desc {
            Some(d) => writeln!(out, "{}.{name} ({d})", i + 1)?,
            None => writeln!(out, "{}.{name}", i + 1)?,
        }
    }
    Ok(Verdict::Ok)
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

/// A progress bar for `analyze`, only for people watching a big file.
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

fn analyze(cfg: &AnalyzeConfig) -> Result<Verdict, Failure> {
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
    let seed = hcleak::clock::now_ts() as u64 ^ u64::from(std::process::id()) << 40;
    let mut sink = analyze::Sink::new(cfg.flows, cfg.format, &mut out, seed, progress_bar(src.progress().1))?;
    if cfg.threads > 1 {
        pipeline::run_threaded(src.as_mut(), &mut table, &mut stats, &mut errors, &mut sink);
    } else {
        pipeline::run(src.as_mut(), &mut table, &mut stats, &mut errors, &mut sink);
    }
    table.finish(&mut |c| sink.conn(c));
    let analyze::Collected { summary, backends } = sink.finish()?;
    let mut verdict = Verdict::Ok;
    if cfg.flows {
        if cfg.format == Format::Table {
            render::flow_summary(&mut out, &summary, &stats, cfg.files.len())?;
        }
    } else {
        let opts = verdict::Options { limit: cfg.limit, min_conns: cfg.min_conns };
        let mut report = hcleak::nat::judge(&backends, host.as_ref(), &opts, nat.as_ref());
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
        verdict = report.verdict;
    }
    out.flush()?;
    analyze_notes(cfg, &stats, &errors);
    // A damaged input means the verdict may be missing what came after the damage.
    Ok(if errors.is_empty() { verdict } else { Verdict::Unknown })
}

/// What `analyze` says on stderr after its output: why a filter may have kept nothing, the read
/// errors.
fn analyze_notes(cfg: &AnalyzeConfig, stats: &DecodeStats, errors: &[source::SourceError]) {
    if let Some(f) = cfg.filter.as_deref().filter(|_| stats.tcp == 0) {
        if hcleak::tunnel::overlay_in_files(&cfg.files) {
            eprintln!("hcleak: {}", hcleak::tunnel::hint(f));
        }
    }
    for e in errors {
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

/// `capture`: opens the outputs, the interface and the metrics port while still privileged, gives
/// up root (keeping only what sampling needs), then runs the library's [`Capture`] on the real
/// source, procfs and the system clock.
fn capture(cfg: &CaptureConfig) -> Result<Verdict, Failure> {
    // Outputs, under temporary names beside their own: nothing that exists is touched yet.
    let create = |p: &Path| Output::create(p, cfg.force).map_err(Failure::Usage);
    let pcap_out = match &cfg.pcap {
        PcapOut::File(p) => Some(create(p)?),
        PcapOut::None | PcapOut::Stdout => None,
    };
    let csv_out = cfg.samples_csv.as_deref().map(create).transpose()?;
    let plot_out = cfg.plot.as_deref().map(create).transpose()?;
    // The metrics port (served only after the privilege drop).
    let listener = cfg.metrics.map(MetricsListener::bind).transpose().map_err(Failure::Usage)?;
    let stop = stop_flag()?;
    // The capture: the one thing that needs CAP_NET_RAW. A large ring takes a moment to set up:
    // say what it costs and when the capture really starts.
    let (iface, snaplen) = (&cfg.live.iface, cfg.live.snaplen);
    eprintln!("hcleak: {}", hcleak::explain::ring_cost(cfg.live.buffer as u64, snaplen as u64));
    let mut src = LiveSource::open(&cfg.live).map_err(Failure::Source)?;
    // With a filter, a watch for overlay packets it would hide (opened while we may still).
    let mut overlay_watch = cfg.live.filter.as_ref().and_then(|_| hcleak::tunnel::LiveWatch::open(iface));
    eprintln!("hcleak: listening on {iface}, link-type {}, snapshot length {snaplen} bytes", src.link_name());
    // The source stops taking packets on a signal, the deadline or the count, then drains what
    // the kernel already holds; the pipeline ends when it does.
    src.stop_when(StopWhen {
        flag: Arc::clone(&stop),
        deadline: cfg.duration.map(|d| Instant::now() + d),
        count: cfg.count,
    });
    // Everything is open and checked: put the outputs in place while the directory is still
    // writable to us, then give up root, keeping only what sampling needs.
    let pcap_file = match pcap_out {
        Some(o) => Some(o.commit().map_err(Failure::Usage)?),
        None if cfg.pcap == PcapOut::Stdout => Some(std::fs::File::from(io::stdout().as_fd().try_clone_to_owned()?)),
        None => None,
    };
    let csv_file = csv_out.map(Output::commit).transpose().map_err(Failure::Usage)?;
    let mut plot_file = match plot_out {
        Some(o) => Some((o.path().to_path_buf(), o.commit().map_err(Failure::Usage)?)),
        None => None,
    };
    if let Some(f) = pcap_file {
        src.write_to(f).map_err(Failure::Source)?;
    }
    let keep: &[caps::Capability] = if cfg.sampling { &privs::SAMPLER_CAPS } else { &[] };
    eprintln!("hcleak: {}", privs::drop_to(cfg.user.as_ref(), keep).map_err(Failure::Usage)?);
    let sampler: Option<Box<dyn HostSampler>> = cfg.sampling.then(|| Box::new(ProcSampler::default()) as _);
    let csv: Option<Box<dyn Write>> = match csv_file {
        Some(f) => {
            let mut f = io::BufWriter::new(f);
            writeln!(f, "{}", sockets::CSV_HEADER)?;
            Some(Box::new(f))
        }
        None => None,
    };
    let metrics = listener.map(MetricsListener::start).transpose().map_err(Failure::Usage)?;
    if let Some(m) = &metrics {
        eprintln!("hcleak: serving metrics at http://{}/metrics", m.addr);
    }
    // With the pcap on standard output, everything else goes to standard error (as tcpdump does).
    let out: Box<dyn Write> = if cfg.report_to_stderr() { Box::new(io::stderr()) } else { Box::new(io::stdout()) };
    let io = Io { sampler, csv, out, stop, clock: Arc::new(SystemClock), metrics };
    let mut run = Capture::new(cfg.settings.clone(), io);
    let mut ended = run.run(&mut src);
    // The plot first: its file was opened before the privilege drop, so this cannot be refused,
    // and a closed report pipe does not lose it.
    if let Some((p, f)) = &mut plot_file {
        if let Err(e) = write_plot(f, p, &ended.report) {
            ended.warnings.push(e.to_string());
        }
    }
    run.write_report(&ended)?;
    let hint = match (&cfg.live.filter, ended.stats.tcp) {
        (Some(f), 0) if overlay_watch.as_mut().is_some_and(|w| w.seen()) => Some(hcleak::tunnel::hint(f)),
        _ => None,
    };
    for note in ended.notes(iface, hint) {
        eprintln!("hcleak: {note}");
    }
    Ok(ended.verdict())
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

/// `sample`: finds the server, opens the output, gives up root (keeping what reading another
/// process's /proc/PID/fd needs), then samples it until stopped.
fn sample(cfg: &SampleConfig) -> Result<Verdict, Failure> {
    // The output is checked first, and put in place once the server is found.
    let output = cfg.output.as_ref().map(|p| Output::create(p, cfg.force)).transpose().map_err(Failure::Usage)?;
    let stop = stop_flag()?;
    let proc = Procfs::default();
    let server = sampled_server(&proc, cfg)?;
    let mut out: Box<dyn Write> = match output {
        Some(o) => Box::new(io::BufWriter::new(o.commit().map_err(Failure::Usage)?)),
        None => Box::new(io::stdout()),
    };
    // Sampling goes on as the unprivileged user with the two capabilities it needs, nothing else.
    eprintln!("hcleak: {}", privs::drop_to(cfg.user.as_ref(), &privs::SAMPLER_CAPS).map_err(Failure::Usage)?);
    writeln!(out, "{}", sockets::CSV_HEADER)?;
    let clock = SystemClock;
    let until = cfg.duration.map(|d| clock.instant() + d);
    // The rows are named by --addr when given (the load balancer's name for the backend).
    let label = |spec: BackendSpec| cfg.addr.map_or(spec, |ip| BackendSpec::Exact(ip, cfg.port));
    let first_pid = server.pid;
    let mut sampler = ProcSampler { proc, servers: vec![server], ..ProcSampler::default() };
    let n = hcleak::sampler::sample_every(&mut sampler, &label, cfg.interval, until, &stop, &clock, &mut out)?;
    let pid = sampler.servers.iter().chain(&sampler.lost).next().map_or(first_pid, |s| s.pid);
    eprintln!("hcleak: {n} samples of pid {pid} (port {})", cfg.port);
    Ok(Verdict::Ok)
}

/// The server `sample` follows: `--pid`'s, or the one process listening on `--port` (at `--addr`).
fn sampled_server(proc: &Procfs, cfg: &SampleConfig) -> Result<hcleak::sampler::Server, Failure> {
    let server = match cfg.pid {
        Some(_) => proc.find_server(cfg.port, cfg.pid),
        None => {
            // --addr may be a load balancer's name for the backend, held by no namespace here.
            let mut found = proc.find_servers(cfg.addr, cfg.port);
            if found.is_empty() && cfg.addr.is_some() {
                found = proc.find_servers(None, cfg.port);
            }
            one_server(found, cfg.port)?
        }
    };
    server.ok_or_else(|| {
        Failure::Usage(match cfg.pid {
            Some(p) => {
                format!("process {p} does not listen on port {} (or /proc/{p} is not readable: run as root)", cfg.port)
            }
            None => format!(
                "no process on this host listens on TCP port {} in any network namespace (or its /proc/PID/fd is not readable: run as root)",
                cfg.port
            ),
        })
    })
}

fn probe(a: &ProbeArgs) -> Result<Verdict, Failure> {
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
    eprintln!("hcleak: {}", privs::drop_to(target.as_ref(), keep).map_err(Failure::Usage)?);
    let report = probe::run(&cfg, &mut counter, &stop).map_err(|r| Failure::Usage(hcleak::explain::refusal(&r)))?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match a.format {
        ProbeFormat::Table => hcleak::render::probe::table(&mut out, &report)?,
        ProbeFormat::Json => hcleak::render::probe::json(&mut out, &report)?,
        ProbeFormat::Nagios => hcleak::render::probe::nagios(&mut out, &report)?,
    }
    out.flush()?;
    Ok(report.verdict)
}
