//! What the end-to-end tests share: a child process stopped by its own PID when dropped, and the
//! one rule for a missing prerequisite (root, a program, a corpus): a failure under `CI=true`,
//! where `.ci/run` provides everything, and a printed `ignored: …` elsewhere — never a pass.
#![allow(dead_code)]

use std::process::Child;

/// Kills the process by its PID and reaps it when dropped (also when the test panics).
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Says why a prerequisite is missing: a failure under CI, a visible skip otherwise.
pub fn missing(why: &str) {
    assert!(std::env::var("CI").map_or(true, |v| v != "true"), "{why}");
    eprintln!("ignored: {why}");
}
