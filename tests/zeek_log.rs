//! `analyze --flows --format zeek` is a real Zeek conn.log: checked line by line here, read by an
//! independent parser (`parsezeeklogs` from PyPI), and in agreement with the TSV and with Zeek's
//! own answers for the conformance corpus (../shared/conformance/zeek).
//!
//! The parser test is shown as ignored when `parsezeeklogs` is not installed, and fails when
//! CI=true (CI installs it: .ci/run).

use libtest_mimic::{Arguments, Failed, Trial};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The captures checked: the Zeek corpus (when present) and a few fixtures with HTTP checks.
fn traces() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = ["fixtures/diag/httpchk-keepalive.pcap", "fixtures/ipv6-lo.pcap", "fixtures/vlan.pcap"]
        .iter()
        .map(|p| root().join(p))
        .collect();
    if let Ok(dir) = std::fs::read_dir(root().join("../shared/conformance/zeek")) {
        let mut corpus: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("pcap" | "pcapng")))
            .collect();
        corpus.sort();
        v.extend(corpus);
    }
    v
}

fn run(trace: &Path, format: &str) -> Result<String, Failed> {
    let o = Command::new(env!("CARGO_BIN_EXE_hcleak"))
        .args(["analyze", "--threads", "1", "--flows", "--format", format])
        .arg(trace)
        .output()
        .map_err(|e| format!("run hcleak: {e}"))?;
    if o.status.code() != Some(0) {
        return Err(format!("{}: exit {:?}: {}", trace.display(), o.status, String::from_utf8_lossy(&o.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// TSV rows as (orig_h, orig_p, resp_h, resp_p, conn_state, history, orig_pkts, resp_pkts).
fn tsv_rows(tsv: &str) -> Vec<Vec<String>> {
    tsv.lines().skip(1).map(|l| l.split('\t').take(9).skip(1).map(String::from).collect()).collect()
}

/// The same columns, picked by name from a conn.log's records.
fn pick(records: &[HashMap<String, String>]) -> Vec<Vec<String>> {
    let cols = ["id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "conn_state", "history", "orig_pkts", "resp_pkts"];
    records.iter().map(|r| cols.iter().map(|c| r.get(*c).cloned().unwrap_or_default()).collect()).collect()
}

/// The log read by the rules of the format: directives in order, every row as wide as #fields.
fn read_by_the_format(log: &str) -> Result<Vec<HashMap<String, String>>, Failed> {
    let lines: Vec<&str> = log.lines().collect();
    let want = ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-", "#path\tconn"];
    for (i, w) in want.iter().enumerate() {
        if lines.get(i) != Some(w) {
            return Err(format!("line {}: want {w:?}, got {:?}", i + 1, lines.get(i)).into());
        }
    }
    let stamp = |l: Option<&&str>, key: &str| {
        l.and_then(|l| l.strip_prefix(key)).is_some_and(|s| s.len() == 19 && s.as_bytes()[4] == b'-')
    };
    if !stamp(lines.get(5), "#open\t") || !stamp(lines.last(), "#close\t") {
        return Err(format!("#open/#close: {:?} {:?}", lines.get(5), lines.last()).into());
    }
    let fields: Vec<&str> = lines[6].strip_prefix("#fields\t").ok_or("no #fields")?.split('\t').collect();
    let types: Vec<&str> = lines[7].strip_prefix("#types\t").ok_or("no #types")?.split('\t').collect();
    if fields.len() != types.len()
        || fields[..7] != ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto"]
    {
        return Err(format!("#fields {fields:?} / #types {types:?}").into());
    }
    let mut out = Vec::new();
    for l in &lines[8..lines.len() - 1] {
        let cells: Vec<&str> = l.split('\t').collect();
        if cells.len() != fields.len() || cells.iter().any(|c| c.is_empty()) {
            return Err(format!("row of {} cells (want {}), or an empty cell: {l:?}", cells.len(), fields.len()).into());
        }
        out.push(fields.iter().zip(&cells).map(|(f, c)| (f.to_string(), c.to_string())).collect());
    }
    Ok(out)
}

/// What every conn.log row must hold, whoever parsed it.
fn check_records(trace: &Path, records: &[HashMap<String, String>], tsv: &str) -> Result<(), Failed> {
    let name = trace.display();
    let want = tsv_rows(tsv);
    if pick(records) != want {
        return Err(format!("{name}: conn.log rows differ from the TSV:\n{:?}\n{want:?}", pick(records)).into());
    }
    let mut uids = HashSet::new();
    for r in records {
        let uid = &r["uid"];
        let well_formed =
            uid.len() == 18 && uid.starts_with('C') && uid[1..].bytes().all(|b| b.is_ascii_alphanumeric());
        if !well_formed || !uids.insert(uid.clone()) {
            return Err(format!("{name}: uid {uid:?} malformed or repeated").into());
        }
        if r["proto"] != "tcp" || !matches!(r["service"].as_str(), "http" | "-") {
            return Err(format!("{name}: proto {} service {}", r["proto"], r["service"]).into());
        }
    }
    Ok(())
}

/// Zeek's own (tuple, conn_state, history) for a corpus trace, when it has an expected file.
fn zeek_expected(trace: &Path) -> Option<Vec<Vec<String>>> {
    let stem = trace.file_stem()?.to_str()?;
    let text = std::fs::read_to_string(trace.with_file_name(format!("{stem}.expected.tsv"))).ok()?;
    let mut rows: Vec<Vec<String>> =
        text.lines().skip(1).map(|l| l.split('\t').skip(1).take(8).map(String::from).collect()).collect();
    rows.sort();
    Some(rows)
}

fn structure() -> Result<(), Failed> {
    let (mut checked, mut http) = (0, 0);
    for t in traces() {
        let log = run(&t, "zeek")?;
        let records =
            read_by_the_format(&log).map_err(|e| format!("{}: {}", t.display(), e.message().unwrap_or("")))?;
        check_records(&t, &records, &run(&t, "tsv")?)?;
        if let Some(zeek) = zeek_expected(&t) {
            let mut ours = pick(&records);
            ours.sort();
            if ours != zeek {
                return Err(format!("{}: conn.log disagrees with Zeek:\n{ours:?}\n{zeek:?}", t.display()).into());
            }
        }
        http += records.iter().filter(|r| r["service"] == "http").count();
        checked += records.len();
    }
    if checked < 50 || http == 0 {
        return Err(format!("{checked} connections checked, {http} with service http").into());
    }
    Ok(())
}

/// Reads a conn.log with parsezeeklogs and prints each record as JSON; a skipped line is an error.
const PARSE: &str = r#"
import json, sys
from parsezeeklogs import ZeekLog
def fail(n, line, exc):
    sys.exit(f"line {n} rejected: {exc}: {line!r}")
log = ZeekLog(sys.argv[1], on_error=fail)
assert log.path == "conn", log.path
for r in log:
    print(json.dumps({k: ("-" if v is None else str(v)) for k, v in r.items()}))
"#;

fn parser_available() -> bool {
    Command::new("python3").args(["-c", "import parsezeeklogs"]).output().is_ok_and(|o| o.status.success())
}

fn independent_parser() -> Result<(), Failed> {
    if !parser_available() {
        return Err("parsezeeklogs is not installed (pip install parsezeeklogs; .ci/run installs it)".into());
    }
    let dir = std::env::temp_dir().join(format!("hcleak-zeek-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut checked = 0;
    for t in traces() {
        let path = dir.join("conn.log");
        std::fs::write(&path, run(&t, "zeek")?).map_err(|e| e.to_string())?;
        let o = Command::new("python3").args(["-c", PARSE]).arg(&path).output().map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(format!("{}: parsezeeklogs: {}", t.display(), String::from_utf8_lossy(&o.stderr)).into());
        }
        let records: Vec<HashMap<String, String>> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        check_records(&t, &records, &run(&t, "tsv")?)?;
        checked += records.len();
    }
    std::fs::remove_dir_all(&dir).ok();
    if checked < 50 {
        return Err(format!("only {checked} connections read").into());
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let tests = vec![
        Trial::test("conn_log_follows_the_format_and_agrees_with_the_tsv_and_zeek", structure),
        Trial::test("parsezeeklogs_reads_every_row_as_the_tsv_has_it", independent_parser)
            .with_ignored_flag(!in_ci && !parser_available()),
    ];
    libtest_mimic::run(&args, tests).exit();
}
