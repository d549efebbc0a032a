//! What every output format says when the input was damaged or the host samples do not fit the
//! capture: one convention for the headline, JSON, Nagios and the exit code.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn hcleak(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hcleak"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .expect("run hcleak")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hcleak-report-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// The first half of a real recording of a leaking backend, cut inside a record.
fn cut_capture() -> PathBuf {
    let full = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/diag/close-wait.pcap")).unwrap();
    let p = tmp("close-wait-cut.pcap");
    std::fs::write(&p, &full[..full.len() / 2 + 11]).unwrap();
    p
}

#[test]
fn a_cut_capture_says_unknown_everywhere_with_the_verdict_up_to_the_damage() {
    // Regression (issue 13.7): the headline said OK while the exit code said 3.
    let p = cut_capture();
    let p = p.to_str().unwrap();
    let table = hcleak(&["analyze", p]);
    assert_eq!(table.status.code(), Some(3));
    let head = out(&table).lines().next().unwrap_or_default().to_string();
    assert!(head.starts_with("UNKNOWN — capture cut short at "), "{head}");
    assert!(head.contains("up to the damage: LEAK — 127.0.0.1:18141"), "{head}");
    assert_eq!(err(&table).lines().count(), 1, "{}", err(&table));

    let json = hcleak(&["analyze", p, "--format", "json"]);
    assert_eq!(json.status.code(), Some(3));
    let doc: Value = serde_json::from_str(&out(&json)).unwrap();
    assert_eq!(doc["verdict"], "unknown");
    assert_eq!(doc["verdict_before_damage"], "leak");
    assert!(doc["damaged_at"].as_f64().unwrap() > 1.7e9);
    assert_eq!(doc["summary"].as_str().unwrap(), head);

    let nagios = hcleak(&["analyze", p, "--format", "nagios"]);
    assert_eq!(nagios.status.code(), Some(3));
    assert!(out(&nagios).starts_with("HCLEAK UNKNOWN - capture cut short at "), "{}", out(&nagios));
}

#[test]
fn an_intact_capture_has_no_damage_fields() {
    let o = hcleak(&["analyze", "fixtures/diag/close-wait.pcap", "--format", "json"]);
    assert_eq!(o.status.code(), Some(2));
    let doc: Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(doc["verdict"], "leak");
    assert!(doc["verdict_before_damage"].is_null() && doc["damaged_at"].is_null());
}

/// The reset-leak recording's samples with each line rewritten by `f`.
fn samples_with(name: &str, f: impl Fn(&str) -> String) -> PathBuf {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/diag/reset-leak.sockets.csv")).unwrap();
    let mut lines = text.lines();
    let mut s = format!("{}\n", lines.next().unwrap());
    for l in lines {
        s.push_str(&f(l));
        s.push('\n');
    }
    let p = tmp(name);
    std::fs::write(&p, s).unwrap();
    p
}

#[test]
fn samples_in_milliseconds_are_reported_not_silently_ignored() {
    // Regression (issue 13.6): samples that do not overlap the capture were dropped without a word
    // and the report asked the user to sample the host they had just sampled.
    let ms = samples_with("ms.csv", |l| {
        let (ts, rest) = l.split_once(',').unwrap();
        format!("{:.0},{rest}", ts.parse::<f64>().unwrap() * 1000.0)
    });
    let o =
        hcleak(&["analyze", "fixtures/diag/reset-leak.pcap", "--sockets", ms.to_str().unwrap(), "--format", "json"]);
    assert_eq!(o.status.code(), Some(3), "without usable samples a reset leak cannot be decided");
    let e = err(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.starts_with("hcleak: host samples: ") && e.contains("none of the samples fall inside the capture"),
        "{e}"
    );
    let doc: Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(doc["host_samples"]["backends_judged_with_them"], 0);
    let b = doc["backends"].as_array().unwrap().iter().find(|b| b["backend"] == "127.0.0.1:18101").unwrap();
    assert!(
        b["evidence"].as_array().unwrap().iter().any(|e| e.as_str().unwrap().contains("outside the capture")),
        "{b}"
    );
}

#[test]
fn samples_labelled_for_another_host_are_named() {
    let other = samples_with("other.csv", |l| l.replace("127.0.0.1:18101", "10.9.9.9:18101"));
    let o = hcleak(&["analyze", "fixtures/diag/reset-leak.pcap", "--sockets", other.to_str().unwrap()]);
    let e = err(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("no backend in the capture matches 10.9.9.9:18101"), "{e}");
    assert!(out(&o).contains("no backend in the capture matches 10.9.9.9:18101"));
}

#[test]
fn fitting_samples_print_nothing_on_stderr() {
    let o = hcleak(&["analyze", "fixtures/diag/reset-leak.pcap", "--sockets", "fixtures/diag/reset-leak.sockets.csv"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(err(&o), "");
    assert!(out(&o).contains("2 backends judged with them"), "{}", out(&o));
}

/// Exit codes 0, 1, 2 and 3, each from a real recording with real probers, and the Nagios state
/// word that goes with each.
#[test]
fn exit_codes_and_nagios_states_on_real_recordings() {
    let cut = cut_capture();
    let cases: [(&[&str], i32, &str); 4] = [
        (&["fixtures/diag/tcpcheck-connect.pcap", "--sockets", "fixtures/diag/tcpcheck-connect.sockets.csv"], 0, "OK"),
        (&["fixtures/diag/never-accept.pcap", "--sockets", "fixtures/diag/never-accept.sockets.csv"], 1, "WARNING"),
        (&["fixtures/diag/blackbox-http.pcap"], 2, "LEAK"),
        (&[cut.to_str().unwrap()], 3, "UNKNOWN"),
    ];
    for (args, code, state) in cases {
        let mut a = vec!["analyze"];
        a.extend_from_slice(args);
        let o = hcleak(&a);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", out(&o));
        a.extend_from_slice(&["--format", "nagios"]);
        let o = hcleak(&a);
        assert_eq!(o.status.code(), Some(code), "{args:?}");
        assert!(out(&o).starts_with(&format!("HCLEAK {state} - ")), "{args:?}: {}", out(&o));
    }
    let o =
        hcleak(&["analyze", "fixtures/diag/never-accept.pcap", "--sockets", "fixtures/diag/never-accept.sockets.csv"]);
    let head = out(&o).lines().next().unwrap_or_default().to_string();
    assert_eq!(head, "SUSPICIOUS — 127.0.0.1:18261: never accepted a connection; accept queue full");
}
