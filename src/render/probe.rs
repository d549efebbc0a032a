//! `hcleak probe`'s report written out: the table, one JSON document, the Nagios line. The
//! sentences come from [`crate::explain`]; this module only lays them out.

use crate::decode::Ts;
use crate::explain::{self, probe_headline};
use crate::probe::{ProbeReport, ShapeRun};
use crate::text::escape;
use std::io::{self, Write};

/// The remedies worded, each once (several kinds share the reset advice).
fn remedy_sentences(r: &ProbeReport) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in r.remedies() {
        let s = explain::remedy(&m);
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

fn sockets_cell(r: &ShapeRun) -> String {
    match (r.before, r.after) {
        (Some(b), Some(a)) => format!("{} → {}", b.sockets, a.sockets),
        _ => "-".into(),
    }
}

fn per_probe_cell(r: &ShapeRun) -> String {
    match r.per_probe {
        Some((p, ci, _)) => format!("{p:.2} ({:.2}–{:.2})", ci.0, ci.1),
        None => "-".into(),
    }
}

/// The report as a table, the headline first, remedies last.
pub fn table(w: &mut dyn Write, r: &ProbeReport) -> io::Result<()> {
    use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, ContentArrangement, Table};
    writeln!(w, "{}", escape(&probe_headline(r)))?;
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic);
    t.set_header(vec![
        "shape",
        "wire",
        "sent",
        "sockets before → after",
        "kept per probe (95% CI)",
        "verdict",
        "accept queue",
        "still answers",
    ]);
    for s in &r.runs {
        let mut sent = s.sent.connections.to_string();
        if s.sent.connected < s.sent.connections {
            sent.push_str(&format!(" ({} connected)", s.sent.connected));
        }
        if let Some((code, n)) = s.statuses.first() {
            sent.push_str(&format!("\n→ {code} ×{n}"));
        }
        if s.cut_short {
            sent.push_str("\n(cut short)");
        }
        t.add_row(vec![
            Cell::new(s.shape.name()),
            Cell::new(s.shape.wire()),
            Cell::new(sent).set_alignment(CellAlignment::Right),
            Cell::new(sockets_cell(s)),
            Cell::new(per_probe_cell(s)),
            Cell::new(s.verdict.name().to_uppercase()),
            Cell::new(s.after.and_then(|a| a.accept_queue).map_or("-".into(), |q| q.to_string())),
            Cell::new(explain::answer(s.answer)),
        ]);
    }
    writeln!(w, "{t}")?;
    for n in explain::probe_notes(r) {
        writeln!(w, "  • {}", escape(&n))?;
    }
    for m in remedy_sentences(r) {
        writeln!(w, "  → {m}")?;
    }
    Ok(())
}

/// The report as one JSON document.
pub fn json(w: &mut dyn Write, r: &ProbeReport) -> io::Result<()> {
    use serde_json::json;
    let secs = |t: Ts| t as f64 / 1e9;
    let shapes: Vec<serde_json::Value> = r
        .runs
        .iter()
        .map(|s| {
            json!({
                "shape": s.shape.name(),
                "wire": s.shape.wire(),
                "flow_label": s.shape.flow_label(),
                "sent": s.sent.connections,
                "connected": s.sent.connected,
                "refused": s.sent.refused,
                "timed_out": s.sent.timed_out,
                "failed": s.sent.failed,
                "http_statuses": s.statuses.iter().map(|(c, n)| (c.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
                "started_at": secs(s.started),
                "last_probe_at": secs(s.last_probe),
                "ended_at": secs(s.ended),
                "sockets_before": s.before.map(|x| x.sockets),
                "sockets_after": s.after.map(|x| x.sockets),
                "kept": s.kept(),
                "sockets_peak": s.peak,
                "came_back": s.came_back(),
                "hidden_after": s.after.and_then(|x| x.hidden),
                "close_wait_after": s.after.and_then(|x| x.close_wait),
                "accept_queue_after": s.after.and_then(|x| x.accept_queue),
                "samples": s.samples,
                "per_probe": s.per_probe.map(|p| p.0),
                "per_probe_ci95": s.per_probe.map(|p| [p.1 .0, p.1 .1]),
                "spearman": s.per_probe.map(|p| p.2),
                "verdict": s.verdict.name(),
                "still_answers": s.answer.ok(),
                "answer": explain::answer(s.answer),
                "cut_short": s.cut_short,
            })
        })
        .collect();
    let doc = json!({
        "target": r.target,
        "address": r.addr.to_string(),
        "verdict": r.verdict.name(),
        "summary": probe_headline(r),
        "shapes": shapes,
        "skipped": r.skipped.iter().map(|(k, why)| json!({"shape": k.name(), "why": explain::skipped(*why)})).collect::<Vec<_>>(),
        "leaking": r.leaking().map(|s| s.shape.name()).collect::<Vec<_>>(),
        "stopped_answering_after": r.runs.iter().find(|s| s.stopped()).map(|s| s.shape.name()),
        "in_use": r.in_use,
        "limit": r.limit,
        "rate_per_s": r.rate,
        "count_per_shape": r.count,
        "interval_s": r.interval.as_secs_f64(),
        "exhaustion_eta_s": r.exhaustion_eta_s,
        "notes": explain::probe_notes(r),
        "remedies": remedy_sentences(r),
        "interrupted": r.interrupted,
        "samples_error": r.samples_error,
    });
    serde_json::to_writer_pretty(&mut *w, &doc).map_err(io::Error::other)?;
    writeln!(w)
}

/// The Nagios plugin line.
pub fn nagios(w: &mut dyn Write, r: &ProbeReport) -> io::Result<()> {
    let state = explain::nagios_state(r.verdict);
    let head = probe_headline(r);
    let text = head.split_once(" — ").map_or(head.as_str(), |(_, t)| t);
    let mut perf = Vec::new();
    for s in &r.runs {
        if let Some((p, _, _)) = s.per_probe {
            perf.push(format!("'{} per_probe'={p:.3}", s.shape.name()));
        }
        if let Some(k) = s.kept() {
            perf.push(format!("'{} kept'={k}", s.shape.name()));
        }
    }
    if let Some(e) = r.exhaustion_eta_s {
        perf.push(format!("'eta'={e:.0}s"));
    }
    let text = escape(text).replace('|', " ");
    if perf.is_empty() {
        writeln!(w, "HCLEAK {state} - {text}")
    } else {
        writeln!(w, "HCLEAK {state} - {text} | {}", perf.join(" "))
    }
}
