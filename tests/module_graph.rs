//! Dependencies between the crate's top-level modules flow one way: no module reaches, through
//! any chain of `crate::` paths, back to itself. Read from the source (comments and unit tests
//! left out), so a cycle fails the suite with the modules that form it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its code names.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![src.to_path_buf()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read src").flatten() {
                files.push(entry.path());
            }
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(src).expect("under src");
        let first = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or_default()
            .trim_end_matches(".rs")
            .to_string();
        if first == "lib" || first == "main" || first == "bin" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let entry = deps.entry(first.clone()).or_default();
        for line in code.lines() {
            let line = line.split("//").next().unwrap_or_default();
            for (at, _) in line.match_indices("crate::") {
                let target: String = line[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !target.is_empty() && target != first && target != "init" {
                    entry.insert(target);
                }
            }
        }
    }
    deps
}

/// A path from `from` back to itself, if there is one.
fn cycle_through(deps: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![from.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().cloned().unwrap_or_default();
        for next in deps.get(&last).into_iter().flatten() {
            if next == from {
                let mut cycle = path.clone();
                cycle.push(next.clone());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push(longer);
            }
        }
    }
    None
}

#[test]
fn no_import_cycle_among_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let deps = graph(&src);
    assert!(deps.len() > 10, "{deps:?}");
    let cycles: Vec<String> = deps
        .keys()
        .filter_map(|m| cycle_through(&deps, m))
        .map(|c| c.join(" → "))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// Whether `from` names `to`, directly or through other modules.
fn reaches(deps: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut stack = vec![from.to_string()];
    let mut seen = BTreeSet::new();
    while let Some(m) = stack.pop() {
        for next in deps.get(&m).into_iter().flatten() {
            if next == to {
                return true;
            }
            if seen.insert(next.clone()) {
                stack.push(next.clone());
            }
        }
    }
    false
}

#[test]
fn layers_depend_downwards_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let deps = graph(&src);
    // The supervisor hands streams to readers through `hub`; it never names the readers, the
    // API or the server. Readers (webrtc) never name the supervisor or what serves them.
    for (from, never) in [
        (
            "supervisor",
            &["webrtc", "http", "metrics", "server", "signalling"][..],
        ),
        ("webrtc", &["supervisor", "http", "metrics", "server"][..]),
        (
            "assemble",
            &["supervisor", "webrtc", "http", "metrics", "server"][..],
        ),
        (
            "description",
            &["assemble", "supervisor", "webrtc", "http", "server"][..],
        ),
        ("hub", &["supervisor", "webrtc", "http", "server"][..]),
    ] {
        for to in never {
            assert!(!reaches(&deps, from, to), "{from} reaches {to}: {deps:?}");
        }
    }
}
