//! CLI: parses arguments into plain structs (`*Args`), then validates each subcommand's into the
//! configuration it runs with (`AnalyzeConfig`, `CaptureConfig`, `SampleConfig`, `probe::Config`):
//! every check that needs no capture, file or socket opened happens in `validate`. Nothing is done
//! while parsing. The exit codes the help text names are [`crate::verdict::Verdict::exit_code`]'s.

use crate::render::Format;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "hcleak",
    version,
    about = "Find backends that leak a socket per health-check probe",
    long_about = "Find backends that leak a socket per health-check probe.\n\n\
                  Reads captures (or a live interface), rebuilds every TCP connection, tells health-check \
                  probes from traffic, and flags backends whose socket count grows with the probes.\n\n\
                  Exit codes: 0 no leak, 1 suspicious, 2 leak, 3 could not decide or error."
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Analyse capture files (pcap or pcapng, plain, gzip or zstd), optionally filtered by a BPF expression.
    #[command(override_usage = "hcleak analyze [OPTIONS] FILE... [FILTER]\n       \
                                hcleak analyze [OPTIONS] -r FILE [FILTER]\n       \
                                hcleak analyze [OPTIONS] FILE... -- FILTER")]
    Analyze(AnalyzeArgs),
    /// Capture live from an interface, sample local backends, report when stopped (Ctrl-C).
    Capture(CaptureArgs),
    /// Only sample a local server's sockets to CSV (for `analyze --sockets`).
    Sample(SampleArgs),
    /// Print a completion script for a shell: `hcleak completions bash > /etc/bash_completion.d/hcleak`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) built from these same definitions: `hcleak man > hcleak.1`.
    Man,
    /// Reproduce the leak on purpose: send each probe shape to one server and count the sockets it
    /// keeps. A load generator: point it at staging or a backend out of rotation.
    Probe(ProbeArgs),
}

/// The default packet ring, in KiB: 64 MiB (about a second of a busy load balancer's traffic).
pub(crate) const DEFAULT_BUFFER_KIB: i64 = 65_536;

/// libpcap's largest snaplen, which tcpdump's `-s 0` stands for.
pub(crate) const MAX_SNAPLEN: i32 = 262_144;

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// The one server to probe (never anything else: no scanning).
    #[arg(value_name = "HOST:PORT")]
    pub(crate) target: String,
    /// Shapes to send, in this order (default: all, reset_in_queue last): halfopen_rst,
    /// handshake_rst, data_rst, connect_fin, http_close, http_keepalive_rst, reset_in_queue.
    #[arg(long, value_delimiter = ',', value_name = "SHAPE,...")]
    pub(crate) kinds: Vec<String>,
    /// Connections per second.
    #[arg(long, default_value_t = 20.0, value_name = "PER_SECOND", allow_negative_numbers = true)]
    pub(crate) rate: f64,
    /// Connections per shape (default 50; reset_in_queue sends them in bursts of 8).
    #[arg(long, value_name = "N", conflicts_with = "duration", allow_negative_numbers = true, value_parser = whole::<u64>)]
    pub(crate) count: Option<u64>,
    /// Time per shape instead of --count (count = rate × duration).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) duration: Option<std::time::Duration>,
    /// Wait after each shape for the server to close what it will close.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) settle: std::time::Duration,
    /// data_rst's bytes (escapes: \r \n \t \\ \xHH).
    #[arg(long, default_value = "PING\\r\\n", value_name = "TEXT")]
    pub(crate) payload: String,
    /// The HTTP shapes' path.
    #[arg(long, default_value = "/", value_name = "PATH")]
    pub(crate) path: String,
    /// Connect and response timeout of one probe.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) timeout: std::time::Duration,
    /// The server's process on this host (found from its LISTEN socket when omitted, in this
    /// network namespace or in the one that owns the target address).
    #[arg(long, value_name = "PID", conflicts_with = "sockets")]
    pub pid: Option<u32>,
    /// For a remote server: the CSV `hcleak sample --port PORT --interval 100ms -o FILE` writes on
    /// its host (read again as it grows; shared storage or a mount).
    #[arg(long, value_name = "FILE")]
    pub sockets: Option<PathBuf>,
    /// Do not count the server's sockets (no root needed): only a server that stops answering —
    /// a plain connection, or HTTP when it speaks HTTP — can be seen; other verdicts are unknown.
    #[arg(long, conflicts_with_all = ["pid", "sockets"])]
    pub no_sample: bool,
    /// The production check interval, for the time to exhaustion.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) interval: std::time::Duration,
    /// The server's socket (or open-file) limit, for the time to exhaustion (default: its fd limit
    /// when sampled).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = positive::<u64>)]
    pub(crate) limit: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ProbeFormat::Table)]
    pub format: ProbeFormat,
    /// User to switch to when root, once the server is found (default nobody); only the two
    /// capabilities that reading its /proc/PID/fd needs are kept.
    #[arg(short = 'Z', long = "user", value_name = "USER")]
    pub user: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProbeFormat {
    Table,
    Json,
    Nagios,
}

/// Default connections per shape: enough for the growth rules at one socket per probe, short
/// enough that all shapes at 20/s answer in about half a minute.
pub(crate) const PROBE_COUNT: u64 = 50;

impl ProbeArgs {
    pub fn validate(&self) -> Result<crate::probe::Config, String> {
        use crate::probe::{self, Shape};
        use std::net::ToSocketAddrs;
        let addr = match self.target.parse::<std::net::SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                if !self.target.contains(':') {
                    return Err(format!("'{}': give HOST:PORT ([v6]:PORT for IPv6)", self.target));
                }
                // One name, one address: the first the resolver gives. Never a range or a list.
                self.target
                    .to_socket_addrs()
                    .map_err(|e| format!("'{}': {e}", self.target))?
                    .next()
                    .ok_or_else(|| format!("'{}' resolves to no address", self.target))?
            }
        };
        if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return Err(format!("'{}' is not a single server's address", self.target));
        }
        let mut shapes = Vec::new();
        for k in &self.kinds {
            let s = Shape::parse(k).ok_or_else(|| {
                let all = Shape::ALL.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ");
                format!("--kinds: unknown shape '{k}' (one of {all})")
            })?;
            if !shapes.contains(&s) {
                shapes.push(s);
            }
        }
        if shapes.is_empty() {
            shapes = Shape::ALL.to_vec();
        }
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= probe::MAX_RATE) {
            return Err(format!("--rate must be above 0 and at most {} per second", probe::MAX_RATE));
        }
        let count = match (self.count, self.duration) {
            (Some(n), _) => n,
            (None, Some(d)) => {
                if d > probe::MAX_SHAPE_TIME {
                    return Err(format!("--duration at most {} s per shape", probe::MAX_SHAPE_TIME.as_secs()));
                }
                (self.rate * d.as_secs_f64()).round() as u64
            }
            (None, None) => PROBE_COUNT,
        };
        if !(5..=probe::MAX_COUNT).contains(&count) {
            return Err(format!(
                "at least 5 and at most {} probes per shape (--count, or --rate × --duration gave {count})",
                probe::MAX_COUNT
            ));
        }
        if count as f64 / self.rate > probe::MAX_SHAPE_TIME.as_secs_f64() {
            return Err(format!(
                "{count} probes at {}/s take longer than {} s per shape",
                self.rate,
                probe::MAX_SHAPE_TIME.as_secs()
            ));
        }
        if self.settle > probe::MAX_SETTLE {
            return Err(format!("--settle at most {} s", probe::MAX_SETTLE.as_secs()));
        }
        if self.timeout.is_zero() || self.timeout > std::time::Duration::from_secs(30) {
            return Err("--timeout must be above 0 and at most 30 s".into());
        }
        if !self.path.starts_with('/')
            || self.path.len() > 2048
            || self.path.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err("--path must start with / and hold no spaces or control characters".into());
        }
        if self.interval.is_zero() {
            return Err("--interval must be above 0".into());
        }
        if self.limit == Some(0) {
            return Err("--limit must be at least 1".into());
        }
        Ok(probe::Config {
            addr,
            target: self.target.clone(),
            shapes,
            rate: self.rate,
            count,
            settle: self.settle,
            spec: probe::Spec {
                payload: probe::parse_payload(&self.payload)?,
                path: self.path.clone(),
                host: self.target.clone(),
                timeout: self.timeout,
            },
            interval: self.interval,
            limit: self.limit,
        })
    }
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("outputs").args(["write", "plot"]).multiple(true)))]
pub struct CaptureArgs {
    /// Interface to capture on (`any` for all).
    #[arg(short = 'i', long = "interface", value_name = "IFACE", required_unless_present = "list_interfaces")]
    pub iface: Option<String>,
    /// List the interfaces that can be captured on, and exit.
    #[arg(short = 'D', long = "list-interfaces")]
    pub list_interfaces: bool,
    /// Stop after this many packets.
    #[arg(short = 'c', value_name = "N", allow_negative_numbers = true, value_parser = positive::<u64>)]
    pub(crate) count: Option<u64>,
    /// Stop after this long (10s, 5m, 1h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) duration: Option<std::time::Duration>,
    /// Bytes captured per packet, as tcpdump's -s: 0 means 262144, the whole packet (headers are
    /// enough for the diagnosis: 96 keeps TCP options and HTTP request lines short).
    #[arg(
        short = 's',
        long = "snaplen",
        default_value_t = 262_144,
        value_name = "BYTES",
        allow_negative_numbers = true
    )]
    pub(crate) snaplen: i32,
    /// Also write the raw packets to this pcap file (and the host samples beside it as
    /// FILE.sockets.csv); `-` writes the pcap to standard output and the report to standard error.
    #[arg(short = 'w', value_name = "FILE")]
    pub(crate) write: Option<PathBuf>,
    /// Replace existing output files (-w, its .sockets.csv, --plot); never through a symlink.
    #[arg(long, requires = "outputs")]
    pub(crate) force: bool,
    /// Kernel capture buffer (the packet ring) in KiB, as tcpdump's -B. Until issue 15 this was
    /// in MiB.
    #[arg(short = 'B', long = "buffer-size", default_value_t = DEFAULT_BUFFER_KIB, value_name = "KiB", allow_negative_numbers = true)]
    pub(crate) buffer_kib: i64,
    /// Do not put the interface into promiscuous mode (tcpdump's -p); by default it is, as in tcpdump.
    #[arg(short = 'p', long = "no-promiscuous-mode")]
    pub(crate) no_promisc: bool,
    /// Do not sample local servers; lets hcleak drop root right after opening the capture.
    #[arg(long)]
    pub(crate) no_sample: bool,
    /// User to switch to when root, once the capture and outputs are open (tcpdump's -Z; default
    /// nobody); while sampling, only the two capabilities the sampler needs are kept.
    #[arg(short = 'Z', long = "user", value_name = "USER")]
    pub(crate) user: Option<String>,
    /// Time between view refreshes.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) refresh: std::time::Duration,
    /// Time between host samples of local backends (not with --no-sample).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", conflicts_with = "no_sample")]
    pub(crate) sample_interval: Option<std::time::Duration>,
    /// The backends' socket (or open-file) limit, for the time to exhaustion.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = positive::<u64>)]
    pub(crate) limit: Option<u64>,
    /// Servers with fewer connections than this are left out of the report.
    #[arg(long, default_value_t = 3, value_name = "N", allow_negative_numbers = true, value_parser = whole::<u64>)]
    pub(crate) min_conns: u64,
    /// Output format of the final report (jsonl: every finished connection and periodic backend
    /// summaries as JSON lines while running).
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub(crate) format: ReportFormat,
    /// Draw the final report as SVG (see analyze --plot).
    #[arg(long, value_name = "FILE.svg")]
    pub(crate) plot: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics while capturing (a bare port binds 127.0.0.1).
    #[arg(long, value_name = "[ADDR:]PORT")]
    pub(crate) metrics: Option<String>,
    /// BPF filter, as in tcpdump.
    #[arg(value_name = "FILTER")]
    pub(crate) filter: Vec<String>,
}

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// The server's port.
    #[arg(long, value_name = "PORT")]
    pub port: u16,
    /// The server's process (found from the LISTEN socket when omitted).
    #[arg(long, value_name = "PID")]
    pub(crate) pid: Option<u32>,
    /// Label the rows with this address (`IP:PORT`) instead of the listening one — the address the
    /// load balancer uses for this backend, when the server listens on all addresses. When several
    /// network namespaces (containers) listen on the port, it also picks the one that owns IP.
    #[arg(long, value_name = "IP")]
    pub(crate) addr: Option<std::net::IpAddr>,
    /// Time between samples.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) interval: std::time::Duration,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) duration: Option<std::time::Duration>,
    /// Write the CSV here instead of standard output.
    #[arg(short = 'o', value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Replace the -o file if it exists (never through a symlink).
    #[arg(long, requires = "output")]
    pub(crate) force: bool,
    /// User to sample as when root, once the server is found and the output open (default nobody);
    /// only the two capabilities that reading other processes' /proc/PID/fd needs are kept.
    #[arg(short = 'Z', long = "user", value_name = "USER")]
    pub(crate) user: Option<String>,
}

impl CaptureArgs {
    /// `-s` as libpcap takes it: 0 is the largest, anything from 64 up to it as given.
    pub(crate) fn snaplen(&self) -> Result<i32, String> {
        match self.snaplen {
            0 => Ok(MAX_SNAPLEN),
            n @ 64..=MAX_SNAPLEN => Ok(n),
            n => Err(format!("-s must be 0 (whole packets) or 64 to {MAX_SNAPLEN} bytes, not {n}")),
        }
    }

    /// `-B` in bytes: 1 KiB up to just under 2 GiB (libpcap's limit).
    pub(crate) fn buffer_bytes(&self) -> Result<i32, String> {
        match self.buffer_kib.checked_mul(1024).map(i32::try_from) {
            Some(Ok(b)) if b >= 1024 => Ok(b),
            _ => Err(format!(
                "-B must be 1 to {} (KiB, as tcpdump's -B: 2 GiB at most), not {}",
                i32::MAX / 1024,
                self.buffer_kib
            )),
        }
    }
}

/// Where `capture -w` sends the raw packets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PcapOut {
    None,
    File(PathBuf),
    /// `-w -`: the pcap on standard output, the report on standard error (as tcpdump does).
    Stdout,
}

/// A validated `capture` run: what to open, where to write, and how the running capture reports.
#[derive(Clone, Debug)]
pub struct CaptureConfig {
    pub live: crate::source::LiveOptions,
    /// `-c`: stop after this many packets.
    pub count: Option<u64>,
    /// `--duration`: stop after this long.
    pub duration: Option<std::time::Duration>,
    pub pcap: PcapOut,
    /// The host samples beside the pcap (`FILE.sockets.csv`), when sampling and writing a file.
    pub samples_csv: Option<PathBuf>,
    pub plot: Option<PathBuf>,
    pub force: bool,
    /// Sample local backends (root keeps the two capabilities the sampler needs).
    pub sampling: bool,
    /// The user to become (resolved: an unknown name fails before anything is opened).
    pub user: Option<crate::privs::Target>,
    /// Where to serve metrics.
    pub metrics: Option<std::net::SocketAddr>,
    /// How the running capture reports (its view chosen by where the report goes).
    pub settings: crate::capture::Settings,
}

impl CaptureConfig {
    /// The report goes to standard error when the pcap takes standard output.
    pub fn report_to_stderr(&self) -> bool {
        self.pcap == PcapOut::Stdout
    }
}

impl CaptureArgs {
    /// Every argument checked, before anything is opened or written (`-D` is not a run: `main`
    /// lists the interfaces before this).
    pub fn validate(&self) -> Result<CaptureConfig, String> {
        use std::io::IsTerminal;
        let iface = self.iface.clone().ok_or_else(|| "-i IFACE is required".to_string())?;
        let snaplen = self.snaplen()?;
        let buffer = self.buffer_bytes()?;
        let pcap = match &self.write {
            Some(p) if p.as_os_str() == "-" => PcapOut::Stdout,
            Some(p) => PcapOut::File(p.clone()),
            None => PcapOut::None,
        };
        let stdout_terminal = std::io::stdout().is_terminal();
        if pcap == PcapOut::Stdout && stdout_terminal {
            return Err("-w - writes binary pcap to standard output, which is a terminal: redirect it".into());
        }
        let metrics = self.metrics.as_deref().map(crate::metrics::bind_addr).transpose()?;
        let sampling = !self.no_sample;
        // -Z is resolved now, root or not: an unknown user stops the run before anything is opened.
        let user = crate::privs::target(self.user.as_deref())?;
        let samples_csv = match &pcap {
            PcapOut::File(p) if sampling => {
                let mut s = p.clone().into_os_string();
                s.push(".sockets.csv");
                Some(PathBuf::from(s))
            }
            _ => None,
        };
        let on_terminal = if pcap == PcapOut::Stdout { std::io::stderr().is_terminal() } else { stdout_terminal };
        let format: Format = self.format.into();
        let filter = (!self.filter.is_empty()).then(|| self.filter.join(" "));
        Ok(CaptureConfig {
            live: crate::source::LiveOptions {
                iface: iface.clone(),
                filter,
                snaplen,
                buffer,
                promisc: !self.no_promisc,
            },
            count: self.count,
            duration: self.duration,
            pcap,
            samples_csv,
            plot: self.plot.clone(),
            force: self.force,
            sampling,
            user,
            metrics,
            settings: crate::capture::Settings {
                iface,
                format,
                view: crate::capture::View::choose(format, on_terminal),
                refresh: self.refresh,
                sample_every: self
                    .sample_interval
                    .unwrap_or(std::time::Duration::from_secs(1))
                    .max(std::time::Duration::from_millis(50)),
                opts: crate::verdict::Options { limit: self.limit, min_conns: self.min_conns },
                nat: sampling.then(|| PathBuf::from("/proc")),
                threaded: true,
            },
        })
    }
}

/// A validated `sample` run.
#[derive(Clone, Debug)]
pub struct SampleConfig {
    pub port: u16,
    pub pid: Option<u32>,
    /// The address the rows are labelled with (and the namespace chosen by).
    pub addr: Option<std::net::IpAddr>,
    pub interval: std::time::Duration,
    pub duration: Option<std::time::Duration>,
    pub output: Option<PathBuf>,
    pub force: bool,
    /// The user to become (resolved).
    pub user: Option<crate::privs::Target>,
}

impl SampleArgs {
    /// `-Z` resolved; the rest needs no check beyond parsing.
    pub fn validate(&self) -> Result<SampleConfig, String> {
        Ok(SampleConfig {
            user: crate::privs::target(self.user.as_deref())?,
            port: self.port,
            pid: self.pid,
            addr: self.addr,
            interval: self.interval,
            duration: self.duration,
            output: self.output.clone(),
            force: self.force,
        })
    }
}

/// `250ms`, `10s`, `5m`, `1h`, or plain seconds.
pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(std::time::Duration::from_secs_f64(secs));
        }
    }
    humantime::parse_duration(s).map_err(|e| format!("bad duration '{s}': {e}"))
}

/// A whole number of at least `MIN`; `-1` gets a sentence, not clap's "unexpected argument".
fn at_least<T: TryFrom<i128>, const MIN: i128>(s: &str) -> Result<T, String> {
    let n: i128 = s.trim().parse().map_err(|_| format!("'{s}' is not a whole number"))?;
    if n < MIN {
        return Err(if MIN == 1 { "must be a positive number".into() } else { format!("must be at least {MIN}") });
    }
    T::try_from(n).map_err(|_| format!("{s} is too large"))
}

/// A whole number ≥ 1.
pub(crate) fn positive<T: TryFrom<i128>>(s: &str) -> Result<T, String> {
    at_least::<T, 1>(s)
}

/// A whole number ≥ 0.
pub(crate) fn whole<T: TryFrom<i128>>(s: &str) -> Result<T, String> {
    at_least::<T, 0>(s)
}

/// `analyze --format`: what each value writes, with or without `--flows`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum FormatArg {
    /// Tables for people: the diagnosis, or with --flows connections counted by state.
    Table,
    /// With --flows: one tab-separated row per connection under a header row.
    Tsv,
    /// With --flows: a Zeek conn.log (#fields, uid, id.orig_h…), then hcleak's columns.
    Zeek,
    /// The diagnosis as one JSON document; with --flows one JSON object per connection per line.
    Json,
    /// JSON lines: one per backend; with --flows one {"type":"conn",…} per connection.
    Jsonl,
    /// The diagnosis as a Nagios/Icinga plugin line with perfdata (not with --flows).
    Nagios,
}

/// `capture --format`: the final report (capture has no per-connection output).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReportFormat {
    /// A table, redrawn while running when stdout is a terminal.
    Table,
    /// The final report as one JSON document.
    Json,
    /// Finished connections and periodic backend summaries as JSON lines while running.
    Jsonl,
    /// A Nagios/Icinga plugin line with perfdata.
    Nagios,
}

impl From<ReportFormat> for Format {
    fn from(f: ReportFormat) -> Format {
        match f {
            ReportFormat::Table => Format::Table,
            ReportFormat::Json => Format::Json,
            ReportFormat::Jsonl => Format::Jsonl,
            ReportFormat::Nagios => Format::Nagios,
        }
    }
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Table => Format::Table,
            FormatArg::Tsv => Format::Tsv,
            FormatArg::Zeek => Format::Zeek,
            FormatArg::Json => Format::Json,
            FormatArg::Jsonl => Format::Jsonl,
            FormatArg::Nagios => Format::Nagios,
        }
    }
}

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// Capture files (pcap or pcapng, plain, gzip or zstd; `-` is standard input), then an optional
    /// BPF filter as in tcpdump: `dump.pcap tcp port 8080`. Words after `--` are all filter.
    #[arg(value_name = "FILE... [FILTER]", required_unless_present = "read")]
    pub args: Vec<String>,
    /// Read this capture (`-`: standard input, as `tcpdump -w - | hcleak analyze -r -`); then every
    /// other word is the BPF filter, even one naming a file.
    #[arg(short = 'r', value_name = "FILE")]
    pub(crate) read: Vec<PathBuf>,
    /// BPF filter words after `--`.
    #[arg(last = true, value_name = "FILTER", hide = true)]
    pub(crate) after_dashes: Vec<String>,
    /// Per-connection output instead of the diagnosis: a summary by conn_state with the default
    /// table, one row per TCP connection with --format tsv, zeek, json or jsonl.
    #[arg(long)]
    pub(crate) flows: bool,
    /// Output format [default: table].
    #[arg(long, value_enum)]
    pub(crate) format: Option<FormatArg>,
    /// Host samples of the backends' socket counts (CSV: ts,backend,sockets[,hidden,…]), as written
    /// by `hcleak sample` on the backend host.
    #[arg(long, value_name = "FILE")]
    pub(crate) sockets: Option<PathBuf>,
    /// The capturing host's conntrack table, saved while (or just after) capturing
    /// (`conntrack -L -p tcp > FILE`, or a copy of /proc/net/nf_conntrack): a published port and its
    /// container are then reported as one backend.
    #[arg(long, value_name = "FILE")]
    pub(crate) conntrack: Option<PathBuf>,
    /// The backends' socket (or open-file) limit, for the time to exhaustion.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = positive::<u64>)]
    pub(crate) limit: Option<u64>,
    /// Servers with fewer connections than this are left out of the report [default: 3].
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = whole::<u64>)]
    pub(crate) min_conns: Option<u64>,
    /// Draw each backend's sockets against probes and time, with the fit and the limit, as SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub(crate) plot: Option<PathBuf>,
    /// Replace the --plot file if it exists (never through a symlink).
    #[arg(long, requires = "plot")]
    pub(crate) force: bool,
    /// Most connections tracked at once (about 500 bytes each); the least recently active are
    /// finished early beyond it, and the report says how many.
    #[arg(long, default_value_t = crate::flow::DEFAULT_MAX_FLOWS, value_name = "N", allow_negative_numbers = true, value_parser = positive::<usize>)]
    pub(crate) max_flows: usize,
    /// 2: one thread reads the capture while another decodes, tracks flows and judges (the default
    /// with two cores or more); 1: everything on one thread. Both give the same results.
    #[arg(long, value_name = "1|2", allow_negative_numbers = true, value_parser = positive::<usize>)]
    pub(crate) threads: Option<usize>,
}

/// A validated `analyze` run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyzeConfig {
    /// Capture files; `-` is standard input.
    pub files: Vec<PathBuf>,
    pub filter: Option<String>,
    pub flows: bool,
    pub format: Format,
    pub sockets: Option<PathBuf>,
    pub conntrack: Option<PathBuf>,
    pub limit: Option<u64>,
    pub min_conns: u64,
    pub plot: Option<PathBuf>,
    pub force: bool,
    pub max_flows: usize,
    pub threads: usize,
}

/// `--min-conns` when not given.
pub(crate) const DEFAULT_MIN_CONNS: u64 = 3;

/// Words that start a BPF expression (pcap-filter(7)); such a word is the filter even when a file
/// of that name happens to exist.
const BPF_WORDS: [&str; 32] = [
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "ip",
    "ip6",
    "arp",
    "rarp",
    "ether",
    "host",
    "net",
    "port",
    "portrange",
    "src",
    "dst",
    "proto",
    "vlan",
    "mpls",
    "not",
    "and",
    "or",
    "less",
    "greater",
    "gateway",
    "broadcast",
    "multicast",
    "inbound",
    "outbound",
    "ifname",
    "sctp",
    "pppoes",
    "geneve",
];

fn looks_like_capture(arg: &str) -> bool {
    let lower = arg.to_ascii_lowercase();
    if BPF_WORDS.contains(&lower.as_str()) || arg.starts_with('(') || arg.starts_with('!') {
        return false;
    }
    arg == "-"
        || Path::new(arg).is_file()
        || [".pcap", ".pcapng", ".cap", ".dump", ".gz", ".zst"].iter().any(|e| lower.ends_with(e))
        || arg.contains('/')
}

/// Splits positional arguments into files (leading, at least one) and a trailing filter.
pub(crate) fn split_files_filter(args: &[String]) -> (Vec<PathBuf>, Option<String>) {
    let mut files = Vec::new();
    let mut rest = args.iter();
    for a in rest.by_ref() {
        if files.is_empty() || looks_like_capture(a) {
            files.push(PathBuf::from(a));
        } else {
            let mut filter = a.clone();
            for w in rest.by_ref() {
                filter.push(' ');
                filter.push_str(w);
            }
            return (files, Some(filter));
        }
    }
    (files, None)
}

/// Words joined into a filter; none is no filter.
fn join_filter<'a>(words: impl IntoIterator<Item = &'a String>) -> Option<String> {
    let f = words.into_iter().map(String::as_str).collect::<Vec<_>>().join(" ");
    (!f.trim().is_empty()).then_some(f)
}

/// The files named more than once (by path, or as the same file under two names): each is read once.
fn same_file_twice(files: &[PathBuf]) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mut seen: Vec<((u64, u64), &PathBuf)> = Vec::new();
    let mut stdin = None;
    for f in files {
        if f.as_os_str() == "-" {
            if stdin.is_some() {
                return Some("standard input (-) is given twice; it can be read once".into());
            }
            stdin = Some(f);
            continue;
        }
        // Unreadable files are reported when opened.
        let Ok(m) = std::fs::metadata(f) else { continue };
        let id = (m.dev(), m.ino());
        if let Some((_, first)) = seen.iter().find(|(i, _)| *i == id) {
            return Some(if *first == f {
                format!("{} is given twice; each capture is read once", f.display())
            } else {
                format!("{} and {} are the same file; each capture is read once", first.display(), f.display())
            });
        }
        seen.push((id, f));
    }
    None
}

impl AnalyzeArgs {
    pub fn validate(&self) -> Result<AnalyzeConfig, String> {
        let (files, filter) = if !self.read.is_empty() {
            // tcpdump's -r: every positional word is the filter.
            (self.read.clone(), join_filter(self.args.iter().chain(&self.after_dashes)))
        } else if !self.after_dashes.is_empty() {
            (self.args.iter().map(PathBuf::from).collect(), join_filter(&self.after_dashes))
        } else {
            split_files_filter(&self.args)
        };
        if files.is_empty() {
            return Err("no capture file given (FILE, or -r FILE; `-` is standard input)".into());
        }
        if let Some(twice) = same_file_twice(&files) {
            return Err(twice);
        }
        let threads = match self.threads {
            Some(n @ 1..=2) => n,
            Some(n) => return Err(format!("--threads must be 1 or 2, not {n} (the work splits in two stages)")),
            None => std::thread::available_parallelism().map_or(1, |n| n.get().min(2)),
        };
        let format = self.format.unwrap_or(FormatArg::Table);
        if self.flows {
            let diagnosis_only = [
                (self.format == Some(FormatArg::Nagios), "--format nagios is a verdict"),
                (self.plot.is_some(), "--plot draws the diagnosis"),
                (self.sockets.is_some(), "--sockets feeds the diagnosis"),
                (self.limit.is_some(), "--limit is for the diagnosis's time to exhaustion"),
                (self.min_conns.is_some(), "--min-conns chooses the servers the diagnosis lists"),
            ];
            if let Some((_, what)) = diagnosis_only.iter().find(|(given, _)| *given) {
                return Err(format!("{what}; it has no meaning with --flows"));
            }
        } else if matches!(format, FormatArg::Tsv | FormatArg::Zeek) {
            let name = if format == FormatArg::Tsv { "tsv" } else { "zeek" };
            return Err(format!(
                "--format {name} writes one row per connection: add --flows (the diagnosis comes as table, json, jsonl or nagios)"
            ));
        }
        if self.flows && self.conntrack.is_some() {
            return Err("--conntrack feeds the diagnosis; it has no effect with --flows".into());
        }
        Ok(AnalyzeConfig {
            files,
            filter,
            flows: self.flows,
            format: format.into(),
            sockets: self.sockets.clone(),
            conntrack: self.conntrack.clone(),
            limit: self.limit,
            min_conns: self.min_conns.unwrap_or(DEFAULT_MIN_CONNS),
            plot: self.plot.clone(),
            force: self.force,
            max_flows: self.max_flows,
            threads,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn trailing_words_are_a_filter() {
        let (f, flt) = split_files_filter(&s(&["dump.pcap", "tcp", "port", "8080"]));
        assert_eq!(f, vec![PathBuf::from("dump.pcap")]);
        assert_eq!(flt.as_deref(), Some("tcp port 8080"));
    }

    #[test]
    fn several_files_then_filter() {
        let (f, flt) = split_files_filter(&s(&["a.pcap", "b.pcapng", "host", "10.0.0.1"]));
        assert_eq!(f.len(), 2);
        assert_eq!(flt.as_deref(), Some("host 10.0.0.1"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m").unwrap().as_secs(), 600);
        assert_eq!(parse_duration("1.5").unwrap().as_millis(), 1500);
        assert_eq!(parse_duration("250ms").unwrap().as_millis(), 250);
        assert!(parse_duration("soon").is_err());
    }

    fn capture(args: &[&str]) -> CaptureArgs {
        let mut v = vec!["hcleak", "capture", "-i", "lo"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).expect("parses").cmd {
            Cmd::Capture(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn capture_flags_follow_tcpdump() {
        // -s 0 is the whole packet; below 64 bytes the headers would not fit.
        assert_eq!(capture(&["-s", "0"]).snaplen(), Ok(MAX_SNAPLEN));
        assert_eq!(capture(&["-s", "96"]).snaplen(), Ok(96));
        assert!(capture(&["-s", "63"]).snaplen().is_err());
        assert!(capture(&["-s", "262145"]).snaplen().is_err());
        // -B is in KiB: tcpdump's -B 4096 is 4 MiB, not 4 GiB.
        assert_eq!(capture(&["-B", "4096"]).buffer_bytes(), Ok(4 << 20));
        assert_eq!(capture(&[]).buffer_bytes(), Ok(64 << 20));
        assert!(capture(&["-B", "0"]).buffer_bytes().is_err());
        assert!(capture(&["-B", "4194304"]).buffer_bytes().is_err(), "4 GiB does not fit libpcap's int");
        // Promiscuous unless -p.
        assert!(!capture(&[]).no_promisc);
        assert!(capture(&["-p"]).no_promisc);
    }

    /// The help's exit codes are the one table's, `Verdict::exit_code`.
    #[test]
    fn the_help_names_the_exit_codes_verdict_gives() {
        use crate::verdict::Verdict;
        use clap::CommandFactory;
        let about = Cli::command().get_long_about().map(|a| a.to_string()).unwrap_or_default();
        for (v, words) in [
            (Verdict::Ok, "no leak"),
            (Verdict::Suspicious, "suspicious"),
            (Verdict::Leak, "leak"),
            (Verdict::Unknown, "could not decide or error"),
        ] {
            assert!(about.contains(&format!("{} {words}", v.exit_code())), "{v:?}: {about}");
        }
    }

    #[test]
    fn first_argument_is_always_a_file() {
        let (f, flt) = split_files_filter(&s(&["missing"]));
        assert_eq!(f, vec![PathBuf::from("missing")]);
        assert_eq!(flt, None);
    }
}
