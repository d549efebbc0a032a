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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Table,
    Tsv,
    Json,
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
    /// Most connections tracked at once; the least recently active are finished early beyond it.
    #[arg(long, default_value_t = 1 << 20, value_name = "N")]
    pub max_flows: usize,
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
    pub max_flows: usize,
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
        if self.limit == Some(0) {
            return Err("--limit must be at least 1".into());
        }
        if self.flows && self.sockets.is_some() {
            return Err("--sockets feeds the diagnosis; it has no effect with --flows".into());
        }
        Ok(AnalyzeConfig {
            files,
            filter,
            flows: self.flows,
            format: match self.format {
                FormatArg::Table => Format::Table,
                FormatArg::Tsv => Format::Tsv,
                FormatArg::Json => Format::Json,
            },
            sockets: self.sockets.clone(),
            limit: self.limit,
            min_conns: self.min_conns,
            max_flows: self.max_flows,
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
    fn first_argument_is_always_a_file() {
        let (f, flt) = split_files_filter(&s(&["missing"]));
        assert_eq!(f, vec![PathBuf::from("missing")]);
        assert_eq!(flt, None);
    }
}
