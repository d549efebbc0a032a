//! What the end-to-end tests share: a child process stopped by its own PID when dropped, and the
//! one rule for a missing prerequisite (root, a program, a corpus): a failure under `CI=true`,
//! where `.ci/run` provides everything, and `ignored` elsewhere — never a pass.
//!
//! [`gated`] applies the rule to a libtest-mimic trial (the test binary has `harness = false`),
//! which libtest then counts as ignored or failed. [`missing`] is for a part of a trial that finds
//! out only while running that it cannot go on (a kernel feature): it fails under CI and prints
//! `ignored: …` elsewhere, and that part is skipped.
#![allow(dead_code)]

use std::process::Child;
use std::time::{Duration, Instant};

/// Kills the process by its PID and reaps it when dropped (also when the test panics).
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// True under `CI=true`.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Says why a prerequisite is missing: a failure under CI, a visible skip otherwise.
pub fn missing(why: &str) {
    assert!(!in_ci(), "{why}");
    eprintln!("ignored: {why}");
}

/// A trial that needs what `lacking` says is missing (`None`: everything is there). Missing
/// under CI it fails with that reason; missing elsewhere it is ignored (and the reason printed);
/// otherwise it runs `f`, whose panic is its failure.
pub fn gated(
    name: &str,
    lacking: Option<String>,
    f: impl FnOnce() + Send + std::panic::UnwindSafe + 'static,
) -> libtest_mimic::Trial {
    match lacking {
        Some(why) if in_ci() => libtest_mimic::Trial::test(name, move || Err(why.into())),
        Some(why) => {
            eprintln!("ignored: {name}: {why}");
            libtest_mimic::Trial::test(name, || Ok(())).with_ignored_flag(true)
        }
        None => libtest_mimic::Trial::test(name, move || {
            std::panic::catch_unwind(f).map_err(|e| {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".into());
                msg.into()
            })
        }),
    }
}

/// Waits until `cond` holds, checking every 10 ms, for at most `limit`; panics naming `what`
/// when it never does. Returns how long it took.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
    t0.elapsed()
}

/// A command's standard output as one JSON document.
pub fn json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(out)))
}

/// The backend named `ip:port` in a JSON report.
pub fn backend<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backend"] == name)
        .unwrap_or_else(|| panic!("no {name} in {v:#}"))
}

/// The backend on 127.0.0.1:`port` in a JSON report.
pub fn loopback(v: &serde_json::Value, port: u16) -> &serde_json::Value {
    backend(v, &format!("127.0.0.1:{port}"))
}
