//! The layout holds the line: read from the sources themselves, so a new
//! `use` that breaks it fails here (CI runs this with every test).
//!
//! - No module outside `src/tui/` names a terminal crate (ratatui,
//!   crossterm): the core and the CLI know nothing of terminals.
//! - No module cycles: within every folder, its modules' uses of each other
//!   (each counted with everything below it) form a graph without a cycle;
//!   a parent and its own child modules may use each other (a folder's
//!   `mod.rs` and its parts).
//! - The top-level modules keep their layers: each uses only lower layers
//!   (the faces may use each other).
//!
//! Uses are read from `crate::a::b` and `super::a` paths, in `use` lines
//! and inline, grouped ones (`crate::a::{b, c}`) included.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Bottom first. A module may use modules of its own layer only among the faces.
const LAYERS: &[&[&str]] = &[
    &["display"],
    &["serde_util", "store", "pool"],
    &["archive"],
    &["config", "demo"],
    &["pg"],
    &["checks"],
    &["ops"],
    &["cli", "tui"],
];

type Module = Vec<String>;

/// Every module of `src/` (the crate root is `[]`) and its source file.
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, src: &Path, out: &mut BTreeMap<Module, PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, src, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(src).unwrap().with_extension("");
                let mut module: Module = relative
                    .iter()
                    .map(|c| c.to_string_lossy().into_owned())
                    .collect();
                if module.last().is_some_and(|m| m == "mod") {
                    module.pop();
                }
                if module == ["lib"] || module == ["main"] {
                    module.clear();
                }
                out.insert(module, path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, src, &mut out);
    out
}

/// Lines of code, without comments and doc comments.
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| !l.trim_start().starts_with("//"))
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The module paths a line names: `crate::x::y`, `super::x`, `super::super::x`,
/// with `::{a, b}` groups expanded one level; `super` is relative to `module`.
fn paths_in(line: &str, module: &[String]) -> Vec<Module> {
    let mut found = Vec::new();
    let bytes: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let rest: String = bytes[i..].iter().collect();
        let starts_word = i == 0 || !is_ident(bytes[i - 1]);
        let head = if !starts_word {
            None
        } else if rest.starts_with("crate::") {
            Some((Vec::new(), "crate::".len()))
        } else if rest.starts_with("super::") {
            let mut ups = 0;
            let mut len = 0;
            while rest[len..].starts_with("super::") {
                ups += 1;
                len += "super::".len();
            }
            let base = module[..module.len().saturating_sub(ups)].to_vec();
            Some((base, len))
        } else {
            None
        };
        let Some((mut path, skip)) = head else {
            i += 1;
            continue;
        };
        let tail = &rest[skip..];
        let segments: Vec<&str> = tail
            .split("::")
            .take_while(|s| !s.is_empty() && s.chars().all(is_ident))
            .collect();
        path.extend(segments.iter().map(|s| s.to_string()));
        let after: usize = segments.iter().map(|s| s.len() + 2).sum();
        let group = tail.get(after..).filter(|t| t.starts_with('{'));
        match group.and_then(|g| g.find('}').map(|end| &g[1..end])) {
            Some(items) => {
                for item in items.split(',') {
                    let name: String = item.trim().chars().take_while(|c| is_ident(*c)).collect();
                    if !name.is_empty() {
                        let mut grouped = path.clone();
                        grouped.push(name);
                        found.push(grouped);
                    }
                }
            }
            None => found.push(path),
        }
        i += skip.max(1);
    }
    found
}

/// The longest prefix of `path` that is a module.
fn resolve(path: &[String], known: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| known.contains_key(m))
}

/// Module to module uses, read from the sources.
fn uses(src: &Path) -> BTreeSet<(Module, Module)> {
    let known = modules(src);
    let mut edges = BTreeSet::new();
    for (module, file) in &known {
        let text = fs::read_to_string(file).unwrap();
        for line in code_lines(&text) {
            for path in paths_in(line, module) {
                if let Some(target) = resolve(&path, &known)
                    && &target != module
                {
                    edges.insert((module.clone(), target));
                }
            }
        }
    }
    edges
}

/// Per folder, the uses between its children (each standing for its whole
/// subtree); a module and its own ancestors are left out.
fn sibling_uses(
    edges: &BTreeSet<(Module, Module)>,
) -> BTreeMap<Module, BTreeSet<(String, String)>> {
    let mut folders: BTreeMap<Module, BTreeSet<(String, String)>> = BTreeMap::new();
    for (from, to) in edges {
        if from.starts_with(to) || to.starts_with(from) {
            continue;
        }
        let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
        folders
            .entry(from[..common].to_vec())
            .or_default()
            .insert((from[common].clone(), to[common].clone()));
    }
    folders
}

/// A cycle in the graph, as the nodes around it, if there is one.
fn find_cycle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeSet<(String, String)>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for (_, next) in edges.iter().filter(|(from, _)| from == node) {
            if let Some(cycle) = visit(next, edges, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .iter()
        .find_map(|(from, _)| visit(from, edges, &mut Vec::new(), &mut done))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_core_and_the_cli_import_no_terminal_crate() {
    let mut offenders = Vec::new();
    for (module, file) in modules(&src()) {
        if module.first().is_some_and(|m| m == "tui") {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if ["ratatui", "crossterm"].iter().any(|c| code.contains(c)) {
                offenders.push(format!(
                    "{}:{}: {}",
                    file.display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "terminal code outside src/tui/:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn no_module_cycles_in_any_folder() {
    let edges = uses(&src());
    assert!(
        edges.len() > 50,
        "too few uses read ({}): is the parser still reading the sources?",
        edges.len()
    );
    let mut cycles = Vec::new();
    for (folder, siblings) in sibling_uses(&edges) {
        if let Some(cycle) = find_cycle(&siblings) {
            let at = if folder.is_empty() {
                "src".to_owned()
            } else {
                format!("src/{}", folder.join("/"))
            };
            cycles.push(format!("{at}: {}", cycle.join(" -> ")));
        }
    }
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn top_level_modules_use_only_lower_layers() {
    let layer_of = |name: &str| {
        LAYERS
            .iter()
            .position(|layer| layer.contains(&name))
            .unwrap_or_else(|| panic!("src/{name} is in no layer: add it to LAYERS"))
    };
    let faces = LAYERS.len() - 1;
    let top = sibling_uses(&uses(&src()))
        .remove(&Vec::new())
        .unwrap_or_default();
    let wrong: Vec<String> = top
        .iter()
        .filter(|(from, to)| {
            let (a, b) = (layer_of(from), layer_of(to));
            b > a || (b == a && a != faces)
        })
        .map(|(from, to)| format!("{from} uses {to}"))
        .collect();
    assert!(wrong.is_empty(), "layers broken:\n{}", wrong.join("\n"));
}

/// The checker itself: it must see a cycle, a grouped use and a `super` path.
#[test]
fn the_cycle_check_finds_cycles_and_reads_every_kind_of_path() {
    let module: Vec<String> = vec!["ops".into(), "restore".into(), "steps".into()];
    assert_eq!(
        paths_in("use crate::archive::{folder, wal::Lsn};", &module),
        vec![
            vec!["archive".to_owned(), "folder".into()],
            vec!["archive".to_owned(), "wal".into()],
        ]
    );
    assert_eq!(
        paths_in("let x = super::super::journal::Entry::new();", &module),
        vec![vec!["ops".to_owned(), "journal".into(), "Entry".into()]]
    );
    assert!(paths_in("let scrate::x = 1;", &module).is_empty());
    let edges: BTreeSet<(String, String)> = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]
        .iter()
        .map(|(x, y)| (x.to_string(), y.to_string()))
        .collect();
    let cycle = find_cycle(&edges).expect("a -> b -> c -> a is a cycle");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4);
    let acyclic: BTreeSet<(String, String)> = [("a", "b"), ("b", "c"), ("a", "c")]
        .iter()
        .map(|(x, y)| (x.to_string(), y.to_string()))
        .collect();
    assert_eq!(find_cycle(&acyclic), None);
}
