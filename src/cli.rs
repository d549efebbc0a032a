//! CLI: parses arguments into plain structs and validates them into run configurations. Nothing is
//! done while parsing.

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
    /// Analyse capture files (pcap or pcapng), optionally filtered by a BPF expression.
    Analyze(AnalyzeArgs),
    /// Capture live from an interface, sample local backends, report when stopped (Ctrl-C).
    Capture(CaptureArgs),
    /// Only sample a local server's sockets to CSV (for `analyze --sockets`).
    Sample(SampleArgs),
}

/// The default packet ring, in KiB: 64 MiB (about a second of a busy load balancer's traffic).
pub const DEFAULT_BUFFER_KIB: i64 = 65_536;

/// libpcap's largest snaplen, which tcpdump's `-s 0` stands for.
pub const MAX_SNAPLEN: i32 = 262_144;

#[derive(Args, Debug)]
pub struct CaptureArgs {
    /// Interface to capture on (`any` for all).
    #[arg(short = 'i', long = "interface", value_name = "IFACE", required_unless_present = "list_interfaces")]
    pub iface: Option<String>,
    /// List the interfaces that can be captured on, and exit.
    #[arg(short = 'D', long = "list-interfaces")]
    pub list_interfaces: bool,
    /// Stop after this many packets.
    #[arg(short = 'c', value_name = "N")]
    pub count: Option<u64>,
    /// Stop after this long (10s, 5m, 1h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// Bytes captured per packet, as tcpdump's -s: 0 means 262144, the whole packet (headers are
    /// enough for the diagnosis: 96 keeps TCP options and HTTP request lines short).
    #[arg(short = 's', long = "snaplen", default_value_t = 262_144, value_name = "BYTES")]
    pub snaplen: i32,
    /// Also write the raw packets to this pcap file (and the host samples beside it as
    /// FILE.sockets.csv); `-` writes the pcap to standard output and the report to standard error.
    #[arg(short = 'w', value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// Replace existing output files (-w, its .sockets.csv, --plot); never through a symlink.
    #[arg(long)]
    pub force: bool,
    /// Kernel capture buffer (the packet ring) in KiB, as tcpdump's -B. Until issue 15 this was
    /// in MiB.
    #[arg(short = 'B', long = "buffer-size", default_value_t = DEFAULT_BUFFER_KIB, value_name = "KiB")]
    pub buffer_kib: i64,
    /// Do not put the interface into promiscuous mode (tcpdump's -p); by default it is, as in tcpdump.
    #[arg(short = 'p', long = "no-promiscuous-mode")]
    pub no_promisc: bool,
    /// Do not sample local servers; lets hcleak drop root right after opening the capture.
    #[arg(long)]
    pub no_sample: bool,
    /// User to switch to when root, once the capture and outputs are open (tcpdump's -Z; default
    /// nobody); while sampling, only the two capabilities the sampler needs are kept.
    #[arg(short = 'Z', long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// Time between view refreshes.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub refresh: std::time::Duration,
    /// Time between host samples of local backends.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub sample_interval: std::time::Duration,
    /// The backends' socket (or open-file) limit, for the time to exhaustion.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Servers with fewer connections than this are left out of the report.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub min_conns: u64,
    /// Output format of the final report (jsonl: every finished connection and periodic backend
    /// summaries as JSON lines while running).
    #[arg(long, value_enum, default_value_t = FormatArg::Table)]
    pub format: FormatArg,
    /// Draw the final report as SVG (see analyze --plot).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics while capturing (a bare port binds 127.0.0.1).
    #[arg(long, value_name = "[ADDR:]PORT")]
    pub metrics: Option<String>,
    /// BPF filter, as in tcpdump.
    #[arg(value_name = "FILTER")]
    pub filter: Vec<String>,
}

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// The server's port.
    #[arg(long, value_name = "PORT")]
    pub port: u16,
    /// The server's process (found from the LISTEN socket when omitted).
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Label the rows with this address (`IP:PORT`) instead of the listening one — the address the
    /// load balancer uses for this backend, when the server listens on all addresses.
    #[arg(long, value_name = "IP")]
    pub addr: Option<std::net::IpAddr>,
    /// Time between samples.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: std::time::Duration,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Option<std::time::Duration>,
    /// Write the CSV here instead of standard output.
    #[arg(short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace the -o file if it exists (never through a symlink).
    #[arg(long)]
    pub force: bool,
    /// User to sample as when root, once the server is found and the output open (default nobody);
    /// only the two capabilities that reading other processes' /proc/PID/fd needs are kept.
    #[arg(short = 'Z', long = "user", value_name = "USER")]
    pub user: Option<String>,
}

impl CaptureArgs {
    /// `-s` as libpcap takes it: 0 is the largest, anything from 64 up to it as given.
    pub fn snaplen(&self) -> Result<i32, String> {
        match self.snaplen {
            0 => Ok(MAX_SNAPLEN),
            n @ 64..=MAX_SNAPLEN => Ok(n),
            n => Err(format!("-s must be 0 (whole packets) or 64 to {MAX_SNAPLEN} bytes, not {n}")),
        }
    }

    /// `-B` in bytes: 1 KiB up to just under 2 GiB (libpcap's limit).
    pub fn buffer_bytes(&self) -> Result<i32, String> {
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

/// `250ms`, `10s`, `5m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(std::time::Duration::from_secs_f64(secs));
        }
    }
    humantime::parse_duration(s).map_err(|e| format!("bad duration '{s}': {e}"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Table,
    Tsv,
    Json,
    Jsonl,
    Nagios,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Table => Format::Table,
            FormatArg::Tsv => Format::Tsv,
            FormatArg::Json => Format::Json,
            FormatArg::Jsonl => Format::Jsonl,
            FormatArg::Nagios => Format::Nagios,
        }
    }
}

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// Capture files, then an optional BPF filter as in tcpdump: `dump.pcap tcp port 8080`.
    #[arg(required = true, value_name = "FILE... [FILTER]")]
    pub args: Vec<String>,
    /// Print one row per TCP connection (Zeek conn.log columns first) instead of the diagnosis.
    #[arg(long)]
    pub flows: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Table)]
    pub format: FormatArg,
    /// Host samples of the backends' socket counts (CSV: ts,backend,sockets[,hidden,…]), as written
    /// by `hcleak sample` on the backend host.
    #[arg(long, value_name = "FILE")]
    pub sockets: Option<PathBuf>,
    /// The backends' socket (or open-file) limit, for the time to exhaustion.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Servers with fewer connections than this are left out of the report.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub min_conns: u64,
    /// Draw each backend's sockets against probes and time, with the fit and the limit, as SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Replace the --plot file if it exists (never through a symlink).
    #[arg(long)]
    pub force: bool,
    /// Most connections tracked at once (about 500 bytes each); the least recently active are
    /// finished early beyond it, and the report says how many.
    #[arg(long, default_value_t = crate::flow::DEFAULT_MAX_FLOWS, value_name = "N")]
    pub max_flows: usize,
    /// 2: one thread reads the capture while another decodes, tracks flows and judges (the default
    /// with two cores or more); 1: everything on one thread. Both give the same results.
    #[arg(long, value_name = "1|2")]
    pub threads: Option<usize>,
}

/// A validated `analyze` run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyzeConfig {
    pub files: Vec<PathBuf>,
    pub filter: Option<String>,
    pub flows: bool,
    pub format: Format,
    pub sockets: Option<PathBuf>,
    pub limit: Option<u64>,
    pub min_conns: u64,
    pub plot: Option<PathBuf>,
    pub force: bool,
    pub max_flows: usize,
    pub threads: usize,
}

fn looks_like_capture(arg: &str) -> bool {
    let lower = arg.to_ascii_lowercase();
    Path::new(arg).exists()
        || [".pcap", ".pcapng", ".cap", ".dump", ".pcap.gz"].iter().any(|e| lower.ends_with(e))
        || arg.contains('/')
}

/// Splits positional arguments into files (leading, at least one) and a trailing filter.
pub fn split_files_filter(args: &[String]) -> (Vec<PathBuf>, Option<String>) {
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

impl AnalyzeArgs {
    pub fn validate(&self) -> Result<AnalyzeConfig, String> {
        let (files, filter) = split_files_filter(&self.args);
        if self.max_flows == 0 {
            return Err("--max-flows must be at least 1".into());
        }
        let threads = match self.threads {
            Some(n @ 1..=2) => n,
            Some(n) => return Err(format!("--threads must be 1 or 2, not {n} (the work splits in two stages)")),
            None => std::thread::available_parallelism().map_or(1, |n| n.get().min(2)),
        };
        if self.limit == Some(0) {
            return Err("--limit must be at least 1".into());
        }
        if self.flows && self.format == FormatArg::Nagios {
            return Err("--format nagios is a verdict; it has no meaning with --flows".into());
        }
        if self.flows && self.plot.is_some() {
            return Err("--plot draws the diagnosis; it has no effect with --flows".into());
        }
        if self.flows && self.sockets.is_some() {
            return Err("--sockets feeds the diagnosis; it has no effect with --flows".into());
        }
        Ok(AnalyzeConfig {
            files,
            filter,
            flows: self.flows,
            format: self.format.into(),
            sockets: self.sockets.clone(),
            limit: self.limit,
            min_conns: self.min_conns,
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

    #[test]
    fn first_argument_is_always_a_file() {
        let (f, flt) = split_files_filter(&s(&["missing"]));
        assert_eq!(f, vec![PathBuf::from("missing")]);
        assert_eq!(flt, None);
    }
}
