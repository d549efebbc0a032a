//! Analyze: where `analyze` sends finished connections, as the pipeline's consumer — one row per
//! connection (`--flows` with TSV, a Zeek conn.log, JSON or JSON lines), a summary by conn_state
//! (`--flows` with the table), or the aggregates the diagnosis judges (without `--flows`). The
//! first write error stops the run (a closed pipe ends it quietly, in `main`).

use crate::backend::Backends;
use crate::classify;
use crate::decode::DecodeStats;
use crate::flow::{Conn, FlowTable};
use crate::pipeline::Consumer;
use crate::render::{self, Format};
use std::io::{self, Write};

/// `analyze`'s consumer.
pub struct Sink<'a> {
    flows: bool,
    format: Format,
    out: &'a mut dyn Write,
    summary: render::FlowSummary,
    zeek: render::ZeekLog,
    backends: Backends,
    write_err: Option<io::Error>,
    progress: Option<indicatif::ProgressBar>,
}

/// What a finished `analyze` run hands on: the summary (`--flows` table) or the aggregates.
pub struct Collected {
    pub summary: render::FlowSummary,
    pub backends: Backends,
}

impl<'a> Sink<'a> {
    /// A sink writing to `out` (the TSV's or the conn.log's header at once); Zeek uids are drawn
    /// from `zeek_seed`. `progress` follows the input read.
    pub fn new(
        flows: bool,
        format: Format,
        out: &'a mut dyn Write,
        zeek_seed: u64,
        progress: Option<indicatif::ProgressBar>,
    ) -> io::Result<Sink<'a>> {
        let zeek = render::ZeekLog::new(zeek_seed);
        if flows && format == Format::Tsv {
            render::flow_tsv_header(out)?;
        }
        if flows && format == Format::Zeek {
            zeek.header(out)?;
        }
        Ok(Sink {
            flows,
            format,
            out,
            summary: render::FlowSummary::default(),
            zeek,
            backends: Backends::new(),
            write_err: None,
            progress,
        })
    }

    /// The end of the run: the progress bar cleared, the first write error if any, the conn.log
    /// closed.
    pub fn finish(mut self) -> io::Result<Collected> {
        if let Some(p) = self.progress.take() {
            p.finish_and_clear();
        }
        if let Some(e) = self.write_err.take() {
            return Err(e);
        }
        if self.flows && self.format == Format::Zeek {
            self.zeek.close(&mut *self.out)?;
        }
        Ok(Collected { summary: self.summary, backends: self.backends })
    }
}

impl Consumer for Sink<'_> {
    fn conn(&mut self, c: Conn) {
        if self.write_err.is_some() {
            return;
        }
        let r = match (self.flows, self.format) {
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
