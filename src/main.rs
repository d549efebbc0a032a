//! The `hcleak` binary: parses arguments, wires the stages, and turns the result into an exit code
//! (0 no leak, 1 suspicious, 2 leak, 3 could not decide or error) in one place.

use clap::Parser;
use hcleak::backend::Backends;
use hcleak::classify;
use hcleak::cli::{AnalyzeConfig, Cli, Cmd};
use hcleak::flow::{Conn, FlowConfig, FlowTable};
use hcleak::pipeline::{self, DecodeStats};
use hcleak::render::{self, Format};
use hcleak::sockets;
use hcleak::source;
use hcleak::verdict::{self, Verdict};
use std::io::{self, Write};
use std::process::ExitCode;

/// Exit codes on-call already scripts against (the Nagios convention).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    Ok = 0,
    Suspicious = 1,
    Leak = 2,
    Unknown = 3,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors are errors (3), not "leak" (clap's 2).
            let code = if e.use_stderr() { Exit::Unknown } else { Exit::Ok };
            let _ = e.print();
            return ExitCode::from(code as u8);
        }
    };
    let result = match cli.cmd {
        Cmd::Analyze(a) => a.validate().map_err(Failure::Usage).and_then(|cfg| analyze(&cfg)),
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

fn analyze(cfg: &AnalyzeConfig) -> Result<Exit, Failure> {
    // Read the samples first: a bad samples file should fail before minutes of packet reading.
    let host = match &cfg.sockets {
        Some(p) => Some(sockets::read_csv(p).map_err(|e| Failure::Usage(e.to_string()))?),
        None => None,
    };
    let mut src = source::open_files(&cfg.files, cfg.filter.as_deref()).map_err(Failure::Source)?;
    let mut table = FlowTable::new(FlowConfig { max_flows: cfg.max_flows, ..FlowConfig::default() });
    let mut stats = DecodeStats::default();
    let mut errors = Vec::new();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut summary = render::FlowSummary::default();
    let mut backends = Backends::new();
    let mut write_err: Option<io::Error> = None;

    if cfg.flows && cfg.format == Format::Tsv {
        render::flow_tsv_header(&mut out)?;
    }
    {
        let mut sink = |c: Conn| {
            if write_err.is_some() {
                return;
            }
            let r = match (cfg.flows, cfg.format) {
                (true, Format::Tsv) => render::flow_tsv(&mut out, &c, classify::flow_label(&c)),
                (true, Format::Json) => render::flow_json(&mut out, &c, classify::flow_label(&c)),
                (true, Format::Table) => {
                    summary.add(&c);
                    Ok(())
                }
                (false, _) => {
                    backends.add(&c);
                    Ok(())
                }
            };
            if let Err(e) = r {
                write_err = Some(e);
            }
        };
        pipeline::run(src.as_mut(), &mut table, &mut stats, &mut errors, &mut sink, |_| true);
        table.finish(&mut sink);
    }
    if let Some(e) = write_err {
        return Err(e.into());
    }
    let mut code = Exit::Ok;
    if cfg.flows {
        if cfg.format == Format::Table {
            render::flow_summary(&mut out, &summary, &stats, cfg.files.len())?;
        }
    } else {
        let opts = verdict::Options { limit: cfg.limit, min_conns: cfg.min_conns };
        let report = verdict::judge(&backends, host.as_ref(), &opts);
        match cfg.format {
            Format::Json => render::report_json(&mut out, &report, &stats)?,
            _ => render::report_table(&mut out, &report, &stats)?,
        }
        code = match report.verdict {
            Verdict::Ok => Exit::Ok,
            Verdict::Suspicious => Exit::Suspicious,
            Verdict::Leak => Exit::Leak,
            Verdict::Unknown => Exit::Unknown,
        };
    }
    out.flush()?;
    for e in &errors {
        eprintln!("hcleak: {e}");
    }
    // A damaged input means the verdict may be missing what came after the damage.
    Ok(if errors.is_empty() { code } else { Exit::Unknown })
}
