//! The library's modules depend on each other one way: each uses only the
//! modules before it in the order stated in src/lib.rs. This test reads every
//! file under src/, collects the top-level modules it names through `crate::`
//! (including `use crate::{a, b::c}` groups) or through `super::` chains that
//! climb to the crate root, and fails on any reference that points later in
//! the order. An order with no backward reference has no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ORDER_MARKER: &str = "Order: `";

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The order stated in lib.rs: one line `//! Order: `a < b < c``.
fn stated_order(lib: &str) -> Vec<String> {
    let line = lib
        .lines()
        .find(|l| l.starts_with("//!") && l.contains(ORDER_MARKER))
        .expect("src/lib.rs states the module order on a line `//! Order: `a < b``");
    let rest = &line[line.find(ORDER_MARKER).unwrap() + ORDER_MARKER.len()..];
    let inner = &rest[..rest.find('`').expect("the order ends with a backtick")];
    inner.split('<').map(|s| s.trim().to_string()).collect()
}

/// Modules declared in lib.rs, and names re-exported at the root (`pub use
/// m::{a, b}` or `pub use m::a`) mapped to the module they come from.
fn declared(lib: &str) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let mut modules = BTreeSet::new();
    let mut aliases = BTreeMap::new();
    for line in lib.lines().map(str::trim) {
        let line = line
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub ");
        if let Some(m) = line.strip_prefix("mod ") {
            // `pub mod x { pub use crate::...; }` blocks are facades of
            // re-exports for tests and benches, not modules with code.
            if let Some(m) = m.strip_suffix(';') {
                modules.insert(m.trim().to_string());
            }
        } else if let Some(path) = line.strip_prefix("use ") {
            let path = path.trim_end_matches(';');
            let (module, rest) = path.split_once("::").unwrap_or((path, ""));
            for item in group_items(rest) {
                let last = item.rsplit("::").next().unwrap_or(&item);
                let name = last.rsplit(" as ").next().unwrap_or(last).trim();
                aliases.insert(name.to_string(), module.to_string());
            }
        }
    }
    (modules, aliases)
}

/// `{a, b::c, d as e}` -> ["a", "b::c", "d as e"]; `a` -> ["a"].
fn group_items(s: &str) -> Vec<String> {
    let s = s.trim();
    let Some(inner) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
        return vec![s.to_string()];
    };
    let (mut items, mut depth, mut cur) = (Vec::new(), 0, String::new());
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut cur).trim().to_string());
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    items.push(cur.trim().to_string());
    items.retain(|i| !i.is_empty());
    items
}

/// The first identifier of each path reached after `prefix` in `code`.
fn heads_after(code: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        if rest.starts_with('{') {
            let mut depth = 0;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(rest.len(), |(i, _)| i + 1);
            let flat: String = rest[..end].split_whitespace().collect::<Vec<_>>().join(" ");
            out.extend(group_items(&flat).iter().map(|i| ident(i)));
        } else {
            out.push(ident(rest));
        }
    }
    out
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Code without comments, so prose naming a module is not a dependency.
fn code_only(text: &str) -> String {
    text.lines()
        .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module of a file, and how deep its own module is (src/a.rs
/// and src/a/mod.rs are 1, src/a/b.rs is 2).
fn place(rel: &Path) -> (String, usize) {
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    let depth = parts.len() - usize::from(parts.last().is_some_and(|p| p == "mod"));
    (parts[0].clone(), depth)
}

/// Every reference from one top-level module to another: (from, to, file).
fn references(
    modules: &BTreeSet<String>,
    aliases: &BTreeMap<String, String>,
) -> Vec<(String, String, String)> {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut refs = Vec::new();
    for path in files {
        let rel = path.strip_prefix(&root).unwrap().to_path_buf();
        if rel == Path::new("lib.rs") || rel == Path::new("main.rs") {
            continue;
        }
        let (from, depth) = place(&rel);
        let code = code_only(&std::fs::read_to_string(&path).unwrap());
        let mut heads = heads_after(&code, "crate::");
        let climb = "super::".repeat(depth);
        heads.extend(heads_after(&code, &climb));
        for head in heads {
            let to = aliases.get(&head).cloned().unwrap_or(head);
            if to != from && modules.contains(&to) {
                refs.push((from.clone(), to, rel.display().to_string()));
            }
        }
    }
    refs
}

#[test]
fn modules_depend_one_way_in_the_stated_order() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let order = stated_order(&lib);
    let (modules, aliases) = declared(&lib);
    let rank: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let unplaced: Vec<_> = modules
        .iter()
        .filter(|m| !rank.contains_key(m.as_str()))
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules missing from the order in src/lib.rs: {unplaced:?}"
    );
    let refs = references(&modules, &aliases);
    assert!(
        !refs.is_empty(),
        "the scan found no reference at all; the parser is broken"
    );
    let backward: BTreeSet<String> = refs
        .iter()
        .filter(|(from, to, _)| rank[from.as_str()] < rank[to.as_str()])
        .map(|(from, to, file)| format!("{from} -> {to} (src/{file})"))
        .collect();
    assert!(
        backward.is_empty(),
        "references against the order `{}` stated in src/lib.rs:\n{}",
        order.join(" < "),
        backward.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn the_scanner_sees_groups_and_super_chains() {
    let code =
        "use crate::{a::X, b as c, d::{e, f}};\nlet x = crate::g::h();\nuse super::super::k::Y;";
    let mut heads = heads_after(code, "crate::");
    heads.extend(heads_after(code, "super::super::"));
    assert_eq!(heads, ["a", "b", "d", "g", "k"]);
    assert_eq!(
        heads_after("xcrate::a; foo::crate::b", "crate::"),
        Vec::<String>::new()
    );
}
