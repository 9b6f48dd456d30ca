//! Architecture invariants a reader can check, checked: the modules of each crate listed here
//! import each other in no circle (a module's `crate::…` and `super::…` paths, tests aside).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates whose modules form no circle.
const ACYCLIC: &[&str] = &[
    "bench",
    "bus",
    "client",
    "dialects",
    "engine",
    "files",
    "gateway",
    "hooks",
    "mls",
    "proto",
    "push",
    "push-fakes",
    "server",
    "store",
    "store-postgres",
    "store-sqlite",
];

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir`, with its module path (`a`, `a::b`; `lib`/`main` for the root).
fn modules(src: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            modules(src, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut name = rel.to_string_lossy().replace('/', "::");
            if let Some(parent) = name.strip_suffix("::mod") {
                name = parent.to_string();
            }
            if name == "main" {
                name = "lib".into();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // A file's unit tests may reach anywhere.
            let text = match text.find("#[cfg(test)]\nmod tests") {
                Some(at) => text[..at].to_string(),
                None => text,
            };
            out.insert(name, text);
        }
    }
}

/// The identifiers that follow each `prefix` in `text`.
fn paths_after<'a>(text: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    text.match_indices(prefix)
        .map(|(at, _)| {
            text[at + prefix.len()..]
                .split("::")
                .map(|part| {
                    let end = part
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(part.len());
                    &part[..end]
                })
                .take_while(|part| !part.is_empty())
                .take(2)
                .collect()
        })
        .collect()
}

/// Which modules each module of the crate imports (the crate root left out: everything
/// declares its modules there).
fn graph(krate: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = crates_dir().join(krate).join("src");
    let mut files = BTreeMap::new();
    modules(&src, &src, &mut files);
    let known = |candidate: &str| files.contains_key(candidate) && candidate != "lib";
    let mut g = BTreeMap::new();
    for (name, text) in &files {
        if name == "lib" {
            continue;
        }
        let mut deps = BTreeSet::new();
        for path in paths_after(text, "crate::") {
            let two = path.join("::");
            let one = path.first().copied().unwrap_or_default();
            if known(&two) {
                deps.insert(two);
            } else if known(one) {
                deps.insert(one.to_string());
            }
        }
        if let Some((parent, _)) = name.rsplit_once("::") {
            for path in paths_after(text, "super::") {
                let sibling = format!("{parent}::{}", path.first().copied().unwrap_or_default());
                if known(&sibling) {
                    deps.insert(sibling);
                } else if known(parent) {
                    deps.insert(parent.to_string());
                }
            }
        }
        deps.remove(name);
        g.insert(name.clone(), deps);
    }
    g
}

/// A circle of imports, if there is one.
fn circle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in g.get(node).into_iter().flatten() {
            if let Some(found) = visit(g, next, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|node| visit(g, node, &mut Vec::new(), &mut done))
}

#[test]
fn the_modules_of_these_crates_import_each_other_in_no_circle() {
    let mut found = Vec::new();
    for krate in ACYCLIC {
        if let Some(c) = circle(&graph(krate)) {
            found.push(format!("crates/{krate}: {}", c.join(" -> ")));
        }
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

/// The engine's kernel: what delivers, and knows no conversation type's rules.
const ENGINE_KERNEL: &[&str] = &["cluster", "commit", "outbox", "session", "stream"];

/// The engine's features, which stand on the kernel.
const ENGINE_FEATURES: &[&str] = &[
    "accounts",
    "chatrooms",
    "conversations",
    "files",
    "groups",
    "operators",
    "presence",
    "publish",
    "push",
    "receipts",
    "users",
    "words",
];

#[test]
fn the_engines_kernel_imports_no_feature() {
    let g = graph("engine");
    let feature = |module: &str| {
        let top = module.split("::").next().unwrap_or_default();
        ENGINE_FEATURES.contains(&top)
    };
    for name in ENGINE_KERNEL.iter().chain(ENGINE_FEATURES) {
        assert!(
            g.keys()
                .any(|m| m == name || m.starts_with(&format!("{name}::"))),
            "crates/engine has no module {name}: update the lists here"
        );
    }
    let found: Vec<String> = ENGINE_KERNEL
        .iter()
        .flat_map(|kernel| {
            g[*kernel]
                .iter()
                .filter(|m| feature(m))
                .map(move |m| format!("{kernel} -> {m}"))
        })
        .collect();
    assert!(
        found.is_empty(),
        "kernel modules import features:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(circle(&g).unwrap(), ["a", "b", "c", "a"]);
}
