//! The module map holds: top-level modules of `src/` use each other without cycles, and the
//! layers that must not know a module do not name it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every top-level module and the top-level modules its files name as `crate::...`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let relative = path.strip_prefix(&src).unwrap();
            let first = relative.components().next().unwrap().as_os_str();
            let module = first.to_str().unwrap().trim_end_matches(".rs").to_owned();
            if matches!(module.as_str(), "lib" | "main" | "fuzz_targets") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let uses = graph.entry(module.clone()).or_default();
            for (i, _) in text.match_indices("crate::") {
                let name: String = text[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    uses.insert(name);
                }
            }
        }
    }
    graph
}

/// A cycle through `module`, if there is one (depth-first).
fn cycle_from(
    graph: &BTreeMap<String, BTreeSet<String>>,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    let here = path.last().unwrap().clone();
    for next in graph.get(&here).into_iter().flatten() {
        if let Some(start) = path.iter().position(|m| m == next) {
            let mut cycle = path[start..].to_vec();
            cycle.push(next.clone());
            return Some(cycle);
        }
        path.push(next.clone());
        if let Some(cycle) = cycle_from(graph, path) {
            return Some(cycle);
        }
        path.pop();
    }
    None
}

#[test]
fn top_level_modules_have_no_import_cycles() {
    let graph = module_graph();
    assert!(graph.contains_key("cluster") && graph.contains_key("transport"));
    for module in graph.keys() {
        let cycle = cycle_from(&graph, &mut vec![module.clone()]);
        assert!(
            cycle.is_none(),
            "import cycle: {}",
            cycle.unwrap().join(" -> ")
        );
    }
}

#[test]
fn layers_do_not_name_what_they_must_not_know() {
    let graph = module_graph();
    let forbidden = [
        ("transport", "webhooks"),
        ("http", "webhooks"),
        ("http", "engine"),
        ("engine", "outbound"),
        ("engine", "webhooks"),
        ("webhooks", "engine"),
        ("webhooks", "outbound"),
        ("apps", "engine"),
        ("apps", "transport"),
    ];
    for (module, unknown) in forbidden {
        assert!(
            !graph[module].contains(unknown),
            "{module} names {unknown}: {:?}",
            graph[module]
        );
    }
}
