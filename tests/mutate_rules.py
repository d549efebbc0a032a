#!/usr/bin/env python3
"""Weakens each verdict and classification rule of issue 13, one at a time, and checks that the
tests notice: `python3 tests/mutate_rules.py [DESCRIPTION ...]` from the repository root (all
rules when none is named). Each mutation is applied to the source, the unit, diagnosis,
report_cli and generated tests are run, and the file is restored whatever happens. A rule whose
weakening no test catches is printed as MISSED. Results of the last run: tests/README.md.
(`cargo mutants` does the same blindly over whole files; this list is the rules on purpose.)
"""
import subprocess, sys
M = [
 ("src/verdict/growth.rs", "const LEAK_RHO: f64 = 0.9;", "const LEAK_RHO: f64 = 0.5;", "rho >= 0.9 lowered to 0.5"),
 ("src/verdict/growth.rs", "if significant && rho >= LEAK_RHO && steady && retained", "if significant && rho >= LEAK_RHO && retained", "leak rule without steady"),
 ("src/verdict/mod.rs", "        evidence.push(Finding::Refusing { since });\n        if verdict == Verdict::Ok {\n            verdict = Verdict::Suspicious;\n        }", "        evidence.push(Finding::Refusing { since });", "refusals no longer suspicious"),
 ("src/verdict/growth.rs", "const MIN_EVENTS: u64 = 5;", "const MIN_EVENTS: u64 = 4;", "min events 5 -> 4"),
 ("src/verdict/growth.rs", "const DRIVER_TIE: f64 = 0.05;", "const DRIVER_TIE: f64 = 0.2;", "pick_driver tie margin 0.05 -> 0.2"),
 ("src/explain.rs", 'Verdict::Suspicious => "WARNING",', 'Verdict::Suspicious => "WARN",', "Nagios WARNING renamed"),
 ("src/backend.rs", "before * 10 <= self.answered + before", "before * 2 <= self.answered + before", "a group's normal answer: 9 in 10 -> 1 in 2"),
 ("src/classify.rs", "pub(crate) const STEADY_MIN_INTERVAL_S: f64 = 0.05;", "pub(crate) const STEADY_MIN_INTERVAL_S: f64 = 0.0;", "no minimum probe interval"),
 ("src/classify.rs", "        Shape::Data => steady || (!mostly(votes.bare_ack_first) && votes.count >= 3),", "        Shape::Data => !mostly(votes.bare_ack_first) && votes.count >= 3,", "Data groups without the rhythm vote"),
 ("src/http.rs", '    "blackbox exporter",           // Prometheus blackbox exporter (http_2xx)\n', '', "Blackbox Exporter dropped from the agent list"),
 ("src/backend.rs", ".filter(|t| *t >= since).min();", ".filter(|t| *t > since).min();", "CLOSE_WAIT end boundary moved"),
 ("src/verdict/steps.rs", "        if !overflowing && (last.0 == 0 || last.0 < first.0) {", "        if false && !overflowing && (last.0 == 0 || last.0 < first.0) {", "host samples no longer overrule the wire"),
 ("src/verdict/steps.rs", "let prober = !g.overflow && prober_sources.contains(&g.src);", "let prober = true;", "every unanswered SYN a probe"),
 ("src/classify.rs", "    if ending == Ending::Open {\n        return Kind::Traffic(Ending::Open);\n    }", "", "checks in flight at the end counted as probes"),
 ("src/verdict/steps.rs", "host_says_never == Some(true) || (host_says_never.is_none() && !cx.b.app_spoke && requests_unanswered > 0)", "false", "never-accepted rule removed"),
 ("src/backend.rs", "    established && !server_closed_first\n", "    established\n", "resets after the server closed count as resets after accept"),
]
out = []
for f, old, new, what in [m for m in M if m[3] in sys.argv[1:]] or M:
    src = open(f).read()
    if old not in src:
        out.append(f"SKIPPED (pattern not found): {what}"); print(out[-1], flush=True); continue
    open(f, "w").write(src.replace(old, new, 1))
    try:
        r = subprocess.run(["cargo", "test", "-q", "--lib", "--test", "diagnosis", "--test", "report_cli", "--test", "generated"],
                           capture_output=True, text=True, timeout=900)
        txt = r.stdout + r.stderr
        # `-q` lists the failing tests, indented, under "failures:".
        failed = sorted({l.strip() for l in txt.splitlines() if l.startswith("    ") and l.strip().replace("_", "").replace("::", "").isalnum()})
        state = "CAUGHT" if r.returncode != 0 else "MISSED"
        out.append(f"{state}: {what} ({len(failed)} failing: {', '.join(l.split('::')[-1] for l in failed[:3])})")
    finally:
        open(f, "w").write(src)
    print(out[-1], flush=True)
print(f"{sum(o.startswith('CAUGHT') for o in out)} caught, {sum(o.startswith('MISSED') for o in out)} missed")
sys.exit(0 if all(o.startswith("CAUGHT") for o in out) else 1)
