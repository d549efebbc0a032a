//! The code's shape (issue 18), checked on the source itself so that it cannot drift back:
//! modules depend on each other one way (no import cycle), no function is longer than a screenful
//! or two, no file holds more than about a thousand lines of non-test code.
//!
//! A module is a file `src/NAME.rs` or a directory `src/NAME/` (its files are one module); the
//! binary (`src/main.rs`) is a module too. A dependency is any `crate::NAME` / `hcleak::NAME` path,
//! including inside `use crate::{a, b::c}` groups, outside test code. Test code is a `tests.rs`
//! file, or everything from a `#[cfg(test)]` that opens `mod tests {` to the end of the file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_FN_LINES: usize = 120;
const MAX_FILE_LINES: usize = 1000;

/// Every source file with the module it belongs to, and its non-test text.
fn sources() -> Vec<(String, PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = fs::read_dir(&src).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            let module = p.file_name().unwrap().to_string_lossy().into_owned();
            let mut files: Vec<PathBuf> = fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()).collect();
            files.sort();
            for f in files.into_iter().filter(|f| f.extension().is_some_and(|e| e == "rs")) {
                if f.file_name().is_some_and(|n| n == "tests.rs") {
                    continue;
                }
                let text = non_test(&fs::read_to_string(&f).unwrap());
                out.push((module.clone(), f, text));
            }
        } else if p.extension().is_some_and(|e| e == "rs") {
            let module = p.file_stem().unwrap().to_string_lossy().into_owned();
            let text = non_test(&fs::read_to_string(&p).unwrap());
            out.push((module, p, text));
        }
    }
    assert!(out.len() > 10, "found the sources in {}", src.display());
    out
}

/// The text before the test module (`#[cfg(test)]` then `mod tests {`).
fn non_test(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines
        .windows(2)
        .position(|w| w[0].trim() == "#[cfg(test)]" && w[1].trim_start().starts_with("mod tests {"))
        .unwrap_or(lines.len());
    lines[..cut].join("\n")
}

/// The modules a text names through `crate::` or `hcleak::` paths, comments left out.
fn deps(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for prefix in ["crate::", "hcleak::"] {
            let mut rest = code;
            while let Some(i) = rest.find(prefix) {
                rest = &rest[i + prefix.len()..];
                if let Some(group) = rest.strip_prefix('{') {
                    // `crate::{a, b::c, d::{e, f}}`: the first segment of each top-level item.
                    let (mut depth, mut item_start) = (0, true);
                    for (j, ch) in group.char_indices() {
                        match ch {
                            '{' => depth += 1,
                            '}' if depth == 0 => break,
                            '}' => depth -= 1,
                            ',' if depth == 0 => item_start = true,
                            c if item_start && (c.is_ascii_lowercase() || c == '_') => {
                                item_start = false;
                                let name: String =
                                    group[j..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                                out.insert(name);
                            }
                            c if !c.is_whitespace() => item_start = false,
                            _ => {}
                        }
                    }
                } else {
                    let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    out.insert(name);
                }
            }
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let files = sources();
    let modules: BTreeSet<String> = files.iter().map(|f| f.0.clone()).collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for (m, _, text) in &files {
        for d in deps(text) {
            if d != *m && modules.contains(&d) {
                g.get_mut(m).unwrap().insert(d);
            }
        }
    }
    g
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        for w in &t.g[v] {
            if !t.index.contains_key(w.as_str()) {
                visit(t, w);
                let lw = t.low[w.as_str()];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.stack.contains(&w.as_str()) {
                let iw = t.index[w.as_str()];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T { g, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), next: 0, out: Vec::new() };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// Functions longer than `max` lines: (file, line, name, length). rustfmt puts a body's closing
/// brace alone on a line at the `fn`'s indentation, which is what ends it here.
fn long_functions(path: &Path, text: &str, max: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let indent = &line[..line.len() - t.len()];
        let head = ["pub ", "pub(crate) ", "pub(super) ", "const ", "unsafe ", "async ", "extern \"C\" "]
            .iter()
            .fold(t, |s, p| s.strip_prefix(p).unwrap_or(s));
        let Some(sig) = head.strip_prefix("fn ") else { continue };
        let name: String = sig.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let close = format!("{indent}}}");
        // A one-line body, or a declaration without one.
        if t.ends_with('}') || t.ends_with(';') {
            continue;
        }
        let Some(end) = lines[i + 1..].iter().position(|l| *l == close) else { continue };
        let len = end + 2;
        if len > max {
            out.push(format!("{}:{}: fn {name} is {len} lines", path.display(), i + 1));
        }
    }
    out
}

#[test]
fn modules_depend_on_each_other_one_way() {
    let g = graph();
    // The finder finds what it should: the pipeline's stages are linked.
    assert!(g["verdict"].contains("backend"), "{g:?}");
    assert!(g["main"].contains("cli"), "{g:?}");
    let c = cycles(&g);
    assert!(c.is_empty(), "import cycles between modules: {c:?}\n(the graph: {g:#?})");
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        g.entry(a.into()).or_default().insert(b.into());
        g.entry(b.into()).or_default();
    }
    assert_eq!(cycles(&g), vec![vec!["a".to_string(), "b".into(), "c".into()]]);
    g.get_mut("c").unwrap().remove("a");
    assert!(cycles(&g).is_empty());
    assert_eq!(
        deps("use crate::{backend::{Backend, Series}, classify::Kind, decode};\nuse hcleak::render; // crate::x"),
        ["backend", "classify", "decode", "render"].iter().map(|s| s.to_string()).collect()
    );
}

#[test]
fn no_function_is_longer_than_a_screenful_or_two() {
    let mut long = Vec::new();
    for (_, path, text) in sources() {
        long.extend(long_functions(&path, &text, MAX_FN_LINES));
    }
    assert!(long.is_empty(), "functions over {MAX_FN_LINES} lines:\n{}", long.join("\n"));
    // The measure measures: a 5-line function is longer than 3.
    let f = "fn a() {\n    let x = 1;\n    let y = 2;\n    x + y;\n}\n";
    assert_eq!(long_functions(Path::new("t.rs"), f, 3).len(), 1);
    assert!(long_functions(Path::new("t.rs"), f, 5).is_empty());
}

#[test]
fn no_file_holds_more_than_a_thousand_lines_of_non_test_code() {
    let mut big = Vec::new();
    for (_, path, text) in sources() {
        let n = text.lines().count();
        if n > MAX_FILE_LINES {
            big.push(format!("{}: {n} lines", path.display()));
        }
    }
    assert!(big.is_empty(), "files over {MAX_FILE_LINES} lines of non-test code:\n{}", big.join("\n"));
}
