//! Render: lays out what the other stages found — finished connections as TSV, Zeek conn.log
//! and JSON lines for `--flows`; the report as a comfy-table, JSON, Prometheus text and the
//! Nagios line ([`probe`] does the same for `hcleak probe`). Sentences come from
//! [`crate::explain`]; nothing here decides anything.

use crate::decode::DecodeStats;
use crate::decode::{Skip, Ts};
use crate::flow::{Conn, ConnState, EndReason};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, ContentArrangement, Table};
use rustc_hash::FxHashMap;
use serde::Serialize;
use std::io::{self, Write};
use std::net::IpAddr;

pub mod probe;

/// Output format chosen with `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Tsv,
    /// A Zeek conn.log (`--flows`).
    Zeek,
    Json,
    /// One JSON object per line: connections as they finish, backend summaries.
    Jsonl,
    /// A Nagios/Icinga plugin status line with perfdata.
    Nagios,
}

pub(crate) use crate::units::{endpoint, ts_secs};

pub(crate) fn end_name(e: EndReason) -> &'static str {
    match e {
        EndReason::Closed => "closed",
        EndReason::Attempt => "attempt_timeout",
        EndReason::Idle => "idle",
        EndReason::Reused => "reused",
        EndReason::Evicted => "evicted",
        EndReason::EndOfInput => "end_of_capture",
    }
}

pub(crate) const FLOW_COLUMNS: [&str; 14] = [
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
        crate::decode::secs(c.first_ts, c.last_ts),
        c.orig_bytes(),
        c.resp_bytes(),
        end_name(c.end),
        kind
    )
}

/// Zeek's conn.log columns (Zeek 6), in Zeek's order, with their Zeek types.
pub(crate) const ZEEK_FIELDS: [(&str, &str); 21] = [
    ("ts", "time"),
    ("uid", "string"),
    ("id.orig_h", "addr"),
    ("id.orig_p", "port"),
    ("id.resp_h", "addr"),
    ("id.resp_p", "port"),
    ("proto", "enum"),
    ("service", "string"),
    ("duration", "interval"),
    ("orig_bytes", "count"),
    ("resp_bytes", "count"),
    ("conn_state", "string"),
    ("local_orig", "bool"),
    ("local_resp", "bool"),
    ("missed_bytes", "count"),
    ("history", "string"),
    ("orig_pkts", "count"),
    ("orig_ip_bytes", "count"),
    ("resp_pkts", "count"),
    ("resp_ip_bytes", "count"),
    ("tunnel_parents", "set[string]"),
];

/// hcleak's own columns, after Zeek's (extension columns, as Zeek's log extensions add them).
pub(crate) const ZEEK_EXTRA: [(&str, &str); 2] = [("hcleak_end", "string"), ("hcleak_kind", "string")];

/// A Zeek conn.log being written: the header, one row per connection with a unique `uid`, and
/// `#close`. Fields hcleak does not know are Zeek's unset `-`.
pub(crate) struct ZeekLog {
    seed: u64,
    next: u64,
}

/// splitmix64's finaliser: a bijection on u64, so distinct counters give distinct uids.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Zeek's `#open`/`#close` stamp.
fn zeek_stamp() -> String {
    chrono::Utc::now().format("%Y-%m-%d-%H-%M-%S").to_string()
}

impl ZeekLog {
    /// `seed` makes the uids of different runs differ (Zeek draws them at random); the same seed
    /// gives the same uids.
    pub(crate) fn new(seed: u64) -> ZeekLog {
        ZeekLog { seed: mix64(seed), next: 0 }
    }

    pub(crate) fn header(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(w, "#separator \\x09")?;
        writeln!(w, "#set_separator\t,")?;
        writeln!(w, "#empty_field\t(empty)")?;
        writeln!(w, "#unset_field\t-")?;
        writeln!(w, "#path\tconn")?;
        writeln!(w, "#open\t{}", zeek_stamp())?;
        let all = || ZEEK_FIELDS.iter().chain(&ZEEK_EXTRA);
        writeln!(w, "#fields\t{}", all().map(|f| f.0).collect::<Vec<_>>().join("\t"))?;
        writeln!(w, "#types\t{}", all().map(|f| f.1).collect::<Vec<_>>().join("\t"))
    }

    /// The next uid: `C` and 17 base-62 digits (96 bits), like Zeek's.
    pub(crate) fn uid(&mut self) -> [u8; 18] {
        const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        self.next += 1;
        let hi = mix64(self.next.wrapping_add(self.seed));
        let lo = mix64(hi ^ self.seed) >> 32;
        let mut n = (u128::from(hi) << 32) | u128::from(lo);
        let mut out = [b'0'; 18];
        out[0] = b'C';
        for d in out[1..].iter_mut().rev() {
            *d = DIGITS[(n % 62) as usize];
            n /= 62;
        }
        out
    }

    /// One conn.log row. As Zeek does, duration and byte counts are unset when no time passed.
    pub(crate) fn row(&mut self, w: &mut dyn Write, c: &Conn, kind: &str) -> io::Result<()> {
        let uid = self.uid();
        let uid = std::str::from_utf8(&uid).unwrap_or("C");
        let service =
            if crate::http::request_line(c.request()).is_some() || crate::http::status_code(c.response()).is_some() {
                "http"
            } else {
                "-"
            };
        write!(
            w,
            "{}\t{uid}\t{}\t{}\t{}\t{}\ttcp\t{service}\t",
            ts_secs(c.first_ts),
            c.orig_h,
            c.orig_p,
            c.resp_h,
            c.resp_p
        )?;
        let duration = crate::decode::secs(c.first_ts, c.last_ts);
        if duration > 0.0 {
            write!(w, "{duration:.6}\t{}\t{}\t", c.orig_bytes(), c.resp_bytes())?;
        } else {
            write!(w, "-\t-\t-\t")?;
        }
        let history = if c.history.as_str().is_empty() { "-" } else { c.history.as_str() };
        writeln!(
            w,
            "{}\t-\t-\t-\t{history}\t{}\t-\t{}\t-\t-\t{}\t{kind}",
            c.conn_state().as_str(),
            c.orig.pkts,
            c.resp.pkts,
            end_name(c.end)
        )
    }

    pub(crate) fn close(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(w, "#close\t{}", zeek_stamp())
    }
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
        duration: crate::decode::secs(c.first_ts, c.last_ts),
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
    pub(crate) by_state: [u64; ConnState::ALL.len()],
    pub(crate) by_resp: FxHashMap<(IpAddr, u16), [u64; ConnState::ALL.len()]>,
    pub(crate) other_resp: u64,
    pub(crate) total: u64,
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
        (Some(a), Some(b)) => format!("{:.1} s", crate::decode::secs(a, b)),
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
pub(crate) fn skipped_table(w: &mut dyn Write, d: &DecodeStats) -> io::Result<()> {
    if d.evicted > 0 {
        writeln!(
            w,
            "{} connections were finished early because the flow table was full (peak {} tracked; raise --max-flows to keep more)",
            d.evicted, d.peak_flows
        )?;
    }
    if d.duplicates > 0 {
        writeln!(
            w,
            "{} packets were captured twice (on two interfaces of -i any, such as a veth and its bridge) and counted once",
            d.duplicates
        )?;
    }
    let tunnelled: u64 = d.encapsulated.iter().sum();
    if tunnelled > 0 {
        let kinds: Vec<String> = crate::decode::Encap::ALL
            .iter()
            .filter(|e| d.encapsulated[**e as usize] > 0)
            .map(|e| format!("{} {}", e.name(), d.encapsulated[*e as usize]))
            .collect();
        writeln!(
            w,
            "{tunnelled} TCP packets were inside tunnels ({}): analysed by their inner headers",
            kinds.join(", ")
        )?;
    }
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

/// Eight-level block sparkline, scaled to the series' own range.
pub(crate) fn sparkline(v: &[f64]) -> String {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    v.iter()
        .map(|&x| {
            if hi - lo < 1e-9 {
                BLOCKS[0]
            } else {
                BLOCKS[(((x - lo) / (hi - lo)) * 7.0).round().clamp(0.0, 7.0) as usize]
            }
        })
        .collect()
}

fn fmt_rate(per_s: f64) -> String {
    if per_s >= 1.0 {
        format!("{per_s:.1}/s")
    } else if per_s * 60.0 >= 1.0 {
        format!("{:.1}/min", per_s * 60.0)
    } else {
        format!("{:.1}/h", per_s * 3600.0)
    }
}

fn fmt_interval(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

/// "127.0.0.2 checks every 200 ms (±3 ms) with GET /health → 200".
pub(crate) fn prober_line(p: &crate::verdict::Prober) -> String {
    let mut s = format!("{} ", p.src);
    match (p.interval_s, p.jitter_s) {
        // Fewer than three intervals are no rhythm yet.
        (Some(i), Some(j)) if p.count >= 4 => s.push_str(&format!("every {} (±{})", fmt_interval(i), fmt_interval(j))),
        _ => s.push_str(&format!("{} time{}", p.count, if p.count == 1 { "" } else { "s" })),
    }
    s.push_str(&format!(", {}", p.kind.name()));
    if let Some(r) = &p.request {
        // From the wire: shown, never obeyed (see `text`).
        s.push(' ');
        s.push_str(&crate::text::escape(r));
    }
    if let Some((code, _)) = p.statuses.first() {
        s.push_str(&format!(" → {code}"));
    }
    if let Some(t) = p.response_time_s {
        s.push_str(&format!(" in {}", fmt_interval(t)));
    }
    s
}

/// The one-line answer on-call reads first. A report cut short by damaged input says so first,
/// with the verdict up to the damage: the same `unknown` the exit code (3) says. Raw: whoever
/// prints it escapes it (`text`).
pub(crate) fn headline(r: &crate::verdict::Report) -> String {
    match r.damage {
        Some(d) => {
            let at = d.at.map_or_else(|| "its start".into(), crate::units::clock);
            let before = headline_for(r, d.verdict_before);
            format!("UNKNOWN — capture cut short at {at}; up to the damage: {before}")
        }
        None => headline_for(r, r.verdict),
    }
}

fn headline_for(r: &crate::verdict::Report, verdict: crate::verdict::Verdict) -> String {
    use crate::units::human_duration;
    use crate::verdict::Verdict;
    let worst = r.backends.first();
    match (verdict, worst) {
        (_, None) if r.minor_backends > 0 => {
            let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
            format!(
                "UNKNOWN — {} to {}, but none has the {} that --min-conns asks for to be judged; lower it (--min-conns 1) to judge them",
                plural(r.minor_conns, "TCP connection", "TCP connections"),
                plural(r.minor_backends as u64, "server", "servers"),
                plural(r.min_conns, "connection", "connections"),
            )
        }
        (_, None) => "UNKNOWN — no TCP connections to judge".into(),
        (Verdict::Leak | Verdict::Suspicious, Some(b)) => {
            let tag = if verdict == Verdict::Leak { "LEAK" } else { "SUSPICIOUS" };
            let mut s = format!("{tag} — {}", b.name());
            if let Some(d) = &b.driver {
                s.push_str(&format!(
                    " keeps {:.2} socket per {} (95% CI {:.2}–{:.2}), {} of them",
                    d.per_event,
                    d.kind.name(),
                    d.ci95.0,
                    d.ci95.1,
                    fmt_rate(d.rate_per_s)
                ));
                if let Some(now) = b.sockets_now {
                    s.push_str(&format!("; {now:.0} sockets now ({})", b.sockets_source.name()));
                }
                match (b.limit, b.exhaustion_eta_s) {
                    (Some(l), Some(e)) => s.push_str(&format!("; limit {l} reached in {}", human_duration(e))),
                    _ => s.push_str("; no limit known (--limit N)"),
                }
            } else if let Some(st) = &b.stopped {
                s.push_str(&format!(" stopped answering after {} probes (accept queue full)", st.probes_before));
            } else if b.evidence.iter().any(|f| matches!(f, crate::verdict::Finding::NeverAccepted { .. })) {
                s.push_str(": never accepted a connection; accept queue full");
            } else if let Some(e) = crate::explain::first_finding(b) {
                s.push_str(&format!(": {e}"));
            }
            let others = r.backends.iter().skip(1).filter(|o| o.verdict >= Verdict::Suspicious).count();
            if others > 0 {
                s.push_str(&format!(" (+{others} more)"));
            }
            s
        }
        (Verdict::Unknown, Some(_)) => {
            let n = r.backends.iter().filter(|b| b.verdict == Verdict::Unknown).count();
            format!(
                "UNKNOWN — {n} backend{} cannot be judged from packets alone: resets after accept hide leaks from the wire; sample the host (--sockets, or capture on it)",
                if n == 1 { "" } else { "s" }
            )
        }
        (Verdict::Ok, Some(_)) => {
            let n = r.backends.len();
            format!("OK — no backend's sockets grow with probes ({n} backend{})", if n == 1 { "" } else { "s" })
        }
    }
}

/// The default diagnosis view: verdict line, one row per backend worst first, then evidence.
pub fn report_table(w: &mut dyn Write, r: &crate::verdict::Report, d: &DecodeStats) -> io::Result<()> {
    use crate::units::human_duration;
    writeln!(w, "{}", crate::text::escape(&headline(r)))?;
    match (d.first_ts, d.last_ts) {
        (Some(a), Some(b)) => {
            writeln!(w, "{} packets ({} TCP) over {:.1} s", d.frames, d.tcp, crate::decode::secs(a, b))?
        }
        _ => writeln!(w, "no packets")?,
    }
    if let Some(c) = &r.host_coverage {
        writeln!(w, "{}", crate::explain::coverage(c))?;
    }
    if r.backends.is_empty() {
        return skipped_table(w, d);
    }
    let mut t = table();
    t.set_header(vec![
        "backend",
        "verdict",
        "probes",
        "probers",
        "sockets",
        "kept per driver",
        "exhausted in",
        "sockets / probes",
    ]);
    for b in &r.backends {
        let kinds = b.probe_kinds().map(|(k, n)| format!("{n} {}", k.name())).collect::<Vec<_>>().join("\n");
        let probers = b.probers.iter().take(3).map(prober_line).collect::<Vec<_>>().join("\n");
        let sockets = match (b.sockets_start, b.sockets_now) {
            (Some(a), Some(n)) => format!("{a:.0} → {n:.0} ({})", b.sockets_source.name()),
            (None, Some(n)) => format!("{n:.0} ({})", b.sockets_source.name()),
            _ => "-".into(),
        };
        let per = b.driver.map(|d| format!("{:.2} / {}", d.per_event, d.kind.name())).unwrap_or_else(|| "-".into());
        let eta = b.exhaustion_eta_s.map(human_duration).unwrap_or_else(|| "-".into());
        let spark = if b.spark_sockets.is_empty() {
            String::new()
        } else {
            format!("{}\n{}", sparkline(&b.spark_sockets), sparkline(&b.spark_probes))
        };
        t.add_row(vec![
            Cell::new(b.name()),
            Cell::new(b.verdict.name().to_uppercase()),
            Cell::new(if kinds.is_empty() { "0".into() } else { kinds }),
            Cell::new(probers),
            Cell::new(sockets),
            Cell::new(per),
            Cell::new(eta),
            Cell::new(spark),
        ]);
    }
    writeln!(w, "{t}")?;
    for b in &r.backends {
        if b.evidence.is_empty() && b.remedies.is_empty() {
            continue;
        }
        writeln!(w, "\n{} — {}", b.name(), b.verdict.name())?;
        for e in crate::explain::evidence(b) {
            writeln!(w, "  • {}", crate::text::escape(&e))?;
        }
        for m in crate::explain::remedies(b) {
            writeln!(w, "  → {m}")?;
        }
    }
    if r.minor_backends > 0 {
        writeln!(w, "\n({} more servers with too few connections to judge are not listed)", r.minor_backends)?;
    }
    skipped_table(w, d)
}

/// The report as one JSON document.
pub fn report_json(w: &mut dyn Write, r: &crate::verdict::Report, d: &DecodeStats) -> io::Result<()> {
    use serde_json::json;
    let doc = json!({
        "verdict": r.verdict.name(),
        "summary": headline(r),
        "verdict_before_damage": r.damage.map(|d| d.verdict_before.name()),
        "damaged_at": r.damage.and_then(|d| d.at).map(|t| t as f64 / 1e9),
        "host_samples": r.host_coverage.as_ref().map(|c| json!({
            "samples": c.samples,
            "first": c.first as f64 / 1e9,
            "last": c.last as f64 / 1e9,
            "backends": c.labels.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
            "unmatched": c.unmatched.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
            "backends_judged_with_them": c.used,
            "summary": crate::explain::coverage(c),
        })),
        "backends": r.backends.iter().map(backend_json).collect::<Vec<_>>(),
        "capture": capture_json(d),
    });
    serde_json::to_writer_pretty(&mut *w, &doc).map_err(io::Error::other)?;
    writeln!(w)
}

/// One backend of the JSON report.
fn backend_json(b: &crate::verdict::BackendReport) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let mut probe_kinds = Map::new();
    let mut traffic = Map::new();
    for (k, n) in &b.kinds {
        if k.is_probe() {
            probe_kinds.insert(k.name().into(), json!(n));
        } else {
            traffic.insert(k.name().into(), json!(n));
        }
    }
    let probers: Vec<Value> = b
        .probers
        .iter()
        .map(|p| {
            json!({
                "src": p.src.to_string(),
                "kind": p.kind.name(),
                "count": p.count,
                "rate_per_s": p.rate_per_s,
                "interval_s": p.interval_s,
                "jitter_s": p.jitter_s,
                "request": p.request,
                "statuses": p.statuses.iter().map(|(c, n)| (c.to_string(), json!(n))).collect::<Map<_, _>>(),
                "response_time_s": p.response_time_s,
            })
        })
        .collect();
    json!({
        "backend": b.name(),
        "verdict": b.verdict.name(),
        "connections": b.conns,
        "probes": b.probes,
        "probe_kinds": probe_kinds,
        "traffic": traffic,
        "driver": b.driver.map(|d| d.kind.name()),
        "sockets_per_driver": b.driver.map(|d| d.per_event),
        "sockets_per_driver_ci95": b.driver.map(|d| [d.ci95.0, d.ci95.1]),
        "driver_rate_per_s": b.driver.map(|d| d.rate_per_s),
        "driver_spearman": b.driver.map(|d| d.rho),
        "sockets_source": b.sockets_source.name(),
        "sockets_start": b.sockets_start,
        "sockets_now": b.sockets_now,
        "hidden_now": b.hidden_now,
        "close_wait_now": b.close_wait_now,
        "limit": b.limit,
        "exhaustion_eta_s": b.exhaustion_eta_s,
        "stopped": b.stopped.map(|s| json!({
            "at": s.at as f64 / 1e9,
            "probes_before": s.probes_before,
            "unanswered_since": s.unanswered_since,
        })),
        "probers": probers,
        "other_clients": b.other_clients,
        "server": json!({
            "process": b.software.process.map(|p| p.to_string()),
            "server_header": b.software.header,
            "container": b.software.container.map(|c| json!({
                "runtime": c.runtime.name(),
                "id": c.id(),
                "pod_uid": c.pod(),
                "name": c.short(),
            })),
            "erlang_vm": b.software.is_erlang(),
        }),
        "published_as": b.evidence.iter().find_map(|f| match f {
            crate::verdict::Finding::Published { ip, port } => Some(endpoint(*ip, *port)),
            _ => None,
        }),
        "maybe_same_as": b.evidence.iter().filter_map(|f| match f {
            crate::verdict::Finding::MaybeSameBackend { ip, port } => Some(endpoint(*ip, *port)),
            _ => None,
        }).collect::<Vec<_>>(),
        "evidence": crate::explain::evidence(b),
        "remedies": crate::explain::remedies(b),
    })
}

/// What was read: packets, duplicates, tunnels, evictions, skips and the kernel's counters.
fn capture_json(d: &DecodeStats) -> serde_json::Value {
    use serde_json::{json, Map};
    let mut skipped = Map::new();
    for s in Skip::ALL {
        skipped.insert(s.name().into(), json!(d.skipped[s as usize]));
    }
    json!({
        "packets": d.frames,
        "tcp_packets": d.tcp,
        "duplicates": d.duplicates,
        "encapsulated": crate::decode::Encap::ALL
            .iter()
            .filter(|e| d.encapsulated[**e as usize] > 0)
            .map(|e| (e.name().to_string(), json!(d.encapsulated[*e as usize])))
            .collect::<Map<String, serde_json::Value>>(),
        "flows_evicted": d.evicted,
        "peak_flows": d.peak_flows,
        "first_ts": d.first_ts.map(|t| t as f64 / 1e9),
        "last_ts": d.last_ts.map(|t| t as f64 / 1e9),
        "skipped": skipped,
        // On lo the kernel counts each packet twice (as it leaves and as it arrives).
        "kernel": d.kernel.map(|k| json!({
            "received_by_filter": k.received,
            "dropped_by_kernel": k.dropped_kernel,
            "dropped_by_interface": k.dropped_iface,
        })),
    })
}

/// Plain periodic lines for a live run whose output is not a terminal: one per backend.
pub fn report_lines(w: &mut dyn Write, r: &crate::verdict::Report, now: Ts) -> io::Result<()> {
    let t = crate::units::utc(now, "%Y-%m-%dT%H:%M:%SZ");
    if r.backends.is_empty() {
        return writeln!(w, "{t} no backends yet");
    }
    for b in &r.backends {
        write!(
            w,
            "{t} backend={} verdict={} probes={} source={}",
            b.name(),
            b.verdict.name(),
            b.probes,
            b.sockets_source.name()
        )?;
        if let Some(n) = b.sockets_now {
            write!(w, " sockets={n:.0}")?;
        }
        if let Some(d) = &b.driver {
            write!(w, " driver={} per_event={:.2}", d.kind.name(), d.per_event)?;
        }
        if let Some(e) = b.exhaustion_eta_s {
            write!(w, " eta_s={e:.0}")?;
        }
        writeln!(w)?;
    }
    Ok(())
}

/// The Nagios plugin line: `HCLEAK LEAK - … | perfdata`. The exit code carries the state.
pub fn report_nagios(w: &mut dyn Write, r: &crate::verdict::Report) -> io::Result<()> {
    let state = crate::explain::nagios_state(r.verdict);
    let head = headline(r);
    let text = head.split_once(" — ").map_or(head.as_str(), |(_, t)| t);
    let mut perf = Vec::new();
    for b in &r.backends {
        let n = b.name();
        perf.push(format!("'{n} probes'={}c", b.probes));
        if let Some(s) = b.sockets_now {
            match b.limit {
                Some(l) => perf.push(format!("'{n} sockets'={s:.0};;;0;{l}")),
                None => perf.push(format!("'{n} sockets'={s:.0};;;0")),
            }
        }
        if let Some(d) = &b.driver {
            perf.push(format!("'{n} sockets_per_driver'={:.3}", d.per_event));
        }
        if let Some(e) = b.exhaustion_eta_s {
            perf.push(format!("'{n} eta'={e:.0}s"));
        }
    }
    // One line: newlines in plugin output start the long text; control characters are escaped.
    let text = crate::text::escape(text).replace('|', " ");
    if perf.is_empty() {
        writeln!(w, "HCLEAK {state} - {text}")
    } else {
        writeln!(w, "HCLEAK {state} - {text} | {}", perf.join(" "))
    }
}

/// One JSON object per backend, for line-oriented logs (`type` says what the line is).
pub(crate) fn report_jsonl(w: &mut dyn Write, r: &crate::verdict::Report, kind: &str, now: Ts) -> io::Result<()> {
    use serde_json::json;
    for b in &r.backends {
        let line = json!({
            "type": kind,
            "ts": now as f64 / 1e9,
            "backend": b.name(),
            "verdict": b.verdict.name(),
            "probes": b.probes,
            "driver": b.driver.map(|d| d.kind.name()),
            "sockets_per_driver": b.driver.map(|d| d.per_event),
            "sockets_source": b.sockets_source.name(),
            "sockets_now": b.sockets_now,
            "exhaustion_eta_s": b.exhaustion_eta_s,
        });
        serde_json::to_writer(&mut *w, &line).map_err(io::Error::other)?;
        writeln!(w)?;
    }
    w.flush()
}

/// A connection as one JSON line with `"type": "conn"`, for `--format jsonl`.
pub(crate) fn conn_jsonl(w: &mut dyn Write, c: &Conn, kind: &str) -> io::Result<()> {
    write!(w, "{{\"type\":\"conn\",\"conn\":")?;
    let mut buf = Vec::with_capacity(256);
    flow_json(&mut buf, c, kind)?;
    w.write_all(&buf[..buf.len() - 1])?;
    writeln!(w, "}}")
}

/// The final report in the chosen format.
pub fn report(w: &mut dyn Write, f: Format, r: &crate::verdict::Report, d: &DecodeStats, now: Ts) -> io::Result<()> {
    match f {
        Format::Json => report_json(w, r, d),
        Format::Nagios => report_nagios(w, r),
        Format::Jsonl => report_jsonl(w, r, "final", now),
        Format::Table | Format::Tsv | Format::Zeek => report_table(w, r, d),
    }
}
