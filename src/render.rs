//! Render: turns finished connections and summaries into text — TSV and JSON lines for `--flows`,
//! comfy-table summaries for people. Nothing here decides anything.

use crate::decode::{Skip, Ts};
use crate::flow::{Conn, ConnState, EndReason};
use crate::pipeline::DecodeStats;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, ContentArrangement, Table};
use rustc_hash::FxHashMap;
use serde::Serialize;
use std::io::{self, Write};
use std::net::IpAddr;

/// Output format chosen with `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Tsv,
    Json,
}

/// `ip:port`, with IPv6 in brackets.
pub fn endpoint(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// Seconds with microseconds, like Zeek's `ts`.
pub fn ts_secs(ts: Ts) -> String {
    let s = ts.div_euclid(1_000_000_000);
    let us = ts.rem_euclid(1_000_000_000) / 1000;
    format!("{s}.{us:06}")
}

pub fn end_name(e: EndReason) -> &'static str {
    match e {
        EndReason::Closed => "closed",
        EndReason::Attempt => "attempt_timeout",
        EndReason::Idle => "idle",
        EndReason::Reused => "reused",
        EndReason::Evicted => "evicted",
        EndReason::EndOfInput => "end_of_capture",
    }
}

pub const FLOW_COLUMNS: [&str; 14] = [
    "ts",
    "orig_h",
    "orig_p",
    "resp_h",
    "resp_p",
    "conn_state",
    "history",
    "orig_pkts",
    "resp_pkts",
    "duration",
    "orig_bytes",
    "resp_bytes",
    "end",
    "kind",
];

pub fn flow_tsv_header(w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, "{}", FLOW_COLUMNS.join("\t"))
}

/// One TSV row; `kind` is the classifier's label for the connection.
pub fn flow_tsv(w: &mut dyn Write, c: &Conn, kind: &str) -> io::Result<()> {
    writeln!(
        w,
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{:.6}\t{}\t{}\t{}\t{}",
        ts_secs(c.first_ts),
        c.orig_h,
        c.orig_p,
        c.resp_h,
        c.resp_p,
        c.conn_state().as_str(),
        c.history.as_str(),
        c.orig.pkts,
        c.resp.pkts,
        (c.last_ts - c.first_ts) as f64 / 1e9,
        c.orig_bytes(),
        c.resp_bytes(),
        end_name(c.end),
        kind
    )
}

#[derive(Serialize)]
struct FlowJson<'a> {
    ts: f64,
    orig_h: IpAddr,
    orig_p: u16,
    resp_h: IpAddr,
    resp_p: u16,
    conn_state: &'static str,
    history: &'a str,
    orig_pkts: u32,
    resp_pkts: u32,
    duration: f64,
    orig_bytes: u64,
    resp_bytes: u64,
    end: &'static str,
    kind: &'a str,
}

pub fn flow_json(w: &mut dyn Write, c: &Conn, kind: &str) -> io::Result<()> {
    let row = FlowJson {
        ts: c.first_ts as f64 / 1e9,
        orig_h: c.orig_h,
        orig_p: c.orig_p,
        resp_h: c.resp_h,
        resp_p: c.resp_p,
        conn_state: c.conn_state().as_str(),
        history: c.history.as_str(),
        orig_pkts: c.orig.pkts,
        resp_pkts: c.resp.pkts,
        duration: (c.last_ts - c.first_ts) as f64 / 1e9,
        orig_bytes: c.orig_bytes(),
        resp_bytes: c.resp_bytes(),
        end: end_name(c.end),
        kind,
    };
    serde_json::to_writer(&mut *w, &row).map_err(io::Error::other)?;
    writeln!(w)
}

/// Per-state and per-responder counts for the flow summary. Responders are capped so a scan or
/// flood cannot grow this without bound.
#[derive(Default)]
pub struct FlowSummary {
    pub by_state: [u64; ConnState::ALL.len()],
    pub by_resp: FxHashMap<(IpAddr, u16), [u64; ConnState::ALL.len()]>,
    pub other_resp: u64,
    pub total: u64,
}

const MAX_RESPONDERS: usize = 10_000;

impl FlowSummary {
    pub fn add(&mut self, c: &Conn) {
        let st = c.conn_state() as usize;
        self.total += 1;
        self.by_state[st] += 1;
        let n = self.by_resp.len();
        match self.by_resp.get_mut(&(c.resp_h, c.resp_p)) {
            Some(v) => v[st] += 1,
            None if n < MAX_RESPONDERS => {
                let mut v = [0; ConnState::ALL.len()];
                v[st] = 1;
                self.by_resp.insert((c.resp_h, c.resp_p), v);
            }
            None => self.other_resp += 1,
        }
    }
}

fn table() -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic);
    t
}

/// The readable `--flows` summary: connections by state, top responders, what was skipped.
pub fn flow_summary(w: &mut dyn Write, s: &FlowSummary, d: &DecodeStats, files: usize) -> io::Result<()> {
    let span = match (d.first_ts, d.last_ts) {
        (Some(a), Some(b)) => format!("{:.1} s", (b - a) as f64 / 1e9),
        _ => "no packets".into(),
    };
    writeln!(
        w,
        "{} packets ({} TCP) from {} file{}, {}; {} TCP connections",
        d.frames,
        d.tcp,
        files,
        if files == 1 { "" } else { "s" },
        span,
        s.total
    )?;
    let mut t = table();
    t.set_header(vec!["conn_state", "connections", "meaning"]);
    for st in ConnState::ALL {
        let n = s.by_state[st as usize];
        if n > 0 {
            t.add_row(vec![
                Cell::new(st.as_str()),
                Cell::new(n).set_alignment(CellAlignment::Right),
                Cell::new(st.describe()),
            ]);
        }
    }
    writeln!(w, "{t}")?;

    let mut resp: Vec<_> = s.by_resp.iter().map(|(k, v)| (v.iter().sum::<u64>(), *k, *v)).collect();
    resp.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    if !resp.is_empty() {
        let mut t = table();
        t.set_header(vec!["responder", "connections", "states"]);
        for (n, (ip, port), v) in resp.iter().take(10) {
            let mut states: Vec<(u64, ConnState)> =
                ConnState::ALL.iter().filter(|s| v[**s as usize] > 0).map(|s| (v[*s as usize], *s)).collect();
            states.sort_by_key(|s| std::cmp::Reverse(s.0));
            let states = states.iter().map(|(n, s)| format!("{} {}", s.as_str(), n)).collect::<Vec<_>>().join(", ");
            t.add_row(vec![
                Cell::new(endpoint(*ip, *port)),
                Cell::new(n).set_alignment(CellAlignment::Right),
                Cell::new(states),
            ]);
        }
        writeln!(w, "top responders")?;
        writeln!(w, "{t}")?;
    }
    skipped_table(w, d)
}

/// What the decoder skipped, by reason; nothing when nothing was skipped.
pub fn skipped_table(w: &mut dyn Write, d: &DecodeStats) -> io::Result<()> {
    if d.skipped_total() == 0 && d.cut == 0 {
        return Ok(());
    }
    let mut t = table();
    t.set_header(vec!["not analysed", "packets"]);
    for r in Skip::ALL {
        let n = d.skipped[r as usize];
        if n > 0 {
            t.add_row(vec![Cell::new(r.name()), Cell::new(n).set_alignment(CellAlignment::Right)]);
        }
    }
    if d.cut > 0 {
        t.add_row(vec![
            Cell::new("cut by snaplen (analysed from headers)"),
            Cell::new(d.cut).set_alignment(CellAlignment::Right),
        ]);
    }
    writeln!(w, "{t}")
}
