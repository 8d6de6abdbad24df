//! The library's modules depend on each other without cycles (ARCHITECTURE.md). Each file under
//! `src/` is a module; a module depends on another when its code (not its comments, not its
//! `#[cfg(test)] mod tests`) names a path into it, by `crate::` or `super::`. A parent naming its
//! children, or a child its parent, is structure rather than dependency and is not counted
//! (cargo-modules `dependencies --acyclic` counts those too, and cannot be installed offline).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `src/verify/mod.rs` -> `verify`, `src/model/io.rs` -> `model::io`, `src/lib.rs` -> ``.
fn module_of(relative: &Path) -> String {
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let file = parts.pop().unwrap_or_default();
    match file.as_str() {
        "mod.rs" | "lib.rs" => {}
        f => parts.push(f.trim_end_matches(".rs").to_string()),
    }
    parts.join("::")
}

fn sources(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "bin") {
                sources(&path, root, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.insert(module_of(path.strip_prefix(root).unwrap()), std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// The code of a file without comments and without its test module.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The modules `module`'s code names: every `crate::a::b` or `super::a` path (with `use` groups
/// `{x, y}` one level deep), resolved to the longest prefix that is a module.
fn dependencies(module: &str, text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    // `super` is the parent module, whether this one is a file or a folder's mod.rs.
    let parent = module.rsplit_once("::").map_or(String::new(), |(p, _)| p.to_string());
    let mut found = BTreeSet::new();
    let code = code(text);
    for (anchor, base) in [("crate::", String::new()), ("super::", parent)] {
        let mut rest = code.as_str();
        while let Some(at) = rest.find(anchor) {
            let before = rest[..at].chars().last();
            rest = &rest[at + anchor.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let path: String = rest.chars().take_while(|c| c.is_alphanumeric() || "_:{}, ".contains(*c)).collect();
            let (head, group) = match path.split_once('{') {
                Some((head, group)) => (head.to_string(), group.split('}').next().unwrap_or_default().to_string()),
                None => (path.clone(), String::new()),
            };
            let head = head.trim().trim_end_matches("::").to_string();
            let mut candidates = vec![head.clone()];
            for item in group.split(',').map(|i| i.trim().split(' ').next().unwrap_or_default()) {
                if !item.is_empty() && item != "self" {
                    candidates.push(format!("{head}::{item}"));
                }
            }
            for candidate in candidates {
                let full = if base.is_empty() { candidate.clone() } else { format!("{base}::{candidate}") };
                let segments: Vec<&str> = full.split("::").filter(|s| !s.is_empty()).collect();
                let target = (0..=segments.len())
                    .rev()
                    .map(|n| segments[..n].join("::"))
                    .find(|m| modules.contains(m))
                    .unwrap_or_default();
                let related = |a: &str, b: &str| b.is_empty() || a == b || a.starts_with(&format!("{b}::"));
                if !related(module, &target) && !related(&target, module) {
                    found.insert(target);
                }
            }
        }
    }
    found
}

/// A cycle in the graph, as a path that starts and ends at the same module.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|m| m == next).unwrap();
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(node, graph, &mut state, &mut vec![]) {
                return Some(c);
            }
        }
    }
    None
}

fn module_graph(files: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    files.iter().map(|(m, text)| (m.clone(), dependencies(m, text, &modules))).collect()
}

#[test]
fn library_modules_have_no_dependency_cycle() {
    // POSEFIX_SRC checks another tree (an older commit's src/, say) with this same test.
    let root =
        std::env::var_os("POSEFIX_SRC").map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), Into::into);
    let mut files = BTreeMap::new();
    sources(&root, &root, &mut files);
    let graph = module_graph(&files);
    assert!(graph["rewrite"].contains("profiles"), "the walk misses uses: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("module dependency cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn a_cycle_is_found() {
    let files: BTreeMap<String, String> = [
        ("verify", "mod compare;\nmod report;\n"),
        ("verify::compare", "use super::report::{KeypointMismatch, Position};\n"),
        ("verify::report", "use super::compare::{Outcome as Comparison, Tolerances};\n"),
        ("profiles", "use crate::rewrite::default_opset;\n"),
        ("rewrite", "// crate::verify in a comment does not count\nuse crate::profiles;\n"),
    ]
    .into_iter()
    .map(|(m, t)| (m.to_string(), t.to_string()))
    .collect();
    let graph = module_graph(&files);
    assert_eq!(graph["verify::compare"], BTreeSet::from(["verify::report".to_string()]));
    assert_eq!(graph["rewrite"], BTreeSet::from(["profiles".to_string()]));
    let cycle = find_cycle(&graph).expect("two cycles");
    assert!(cycle.contains(&"profiles".to_string()) || cycle.contains(&"verify::report".to_string()), "{cycle:?}");
}
