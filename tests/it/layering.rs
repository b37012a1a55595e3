//! The crate's layering, held by reading `src/`: every `crate::` path a file names must sit in the
//! file's own layer or one below it (the layers are the ones written at the top of `src/lib.rs`),
//! and `core` names no socket or runtime-I/O type. No server: this reads the sources.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers, bottom first. A file or an imported path belongs to the layer of the longest
/// module path listed here that prefixes it; every module must be listed.
pub(crate) const LAYERS: &[(&str, &[&str])] = &[
    (
        "domain",
        &[
            "core",
            "failover::machine",
            "failover::health",
            "failover::route",
            "failover::mode",
            "upstream::error",
            "upstream::priority",
            "upstream::observation",
            "tenant::id",
        ],
    ),
    (
        "settings",
        &["config::secret", "config::apps", "config::engine"],
    ),
    ("services", &["engine", "upstream", "lifecycle"]),
    ("failover", &["failover"]),
    ("identity", &["auth", "tenant"]),
    ("config", &["config"]),
    ("edges", &["transport", "ops", "web"]),
    ("wiring", &["app", "telemetry", "fuzzing"]),
];

/// What `core` must never name: sockets, files, processes, HTTP and vendor clients.
const CORE_FORBIDDEN: &[&str] = &[
    "tokio::net",
    "tokio::io",
    "tokio::fs",
    "tokio::process",
    "std::net",
    "std::fs",
    "std::process",
    "hyper",
    "hyper_util",
    "axum",
    "tower",
    "tower_http",
    "reqwest",
    "tokio_tungstenite",
    "rustls",
    "redis",
    "socket2",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, sorted.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// `src/failover/route.rs` -> `["failover", "route"]`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).expect("under src");
    let mut segs: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let last = segs.pop().expect("file name");
    segs.push(last.trim_end_matches(".rs").to_string());
    segs
}

/// The layer index of a module path, by its longest listed prefix.
pub(crate) fn layer_of(path: &[String]) -> Option<usize> {
    (1..=path.len()).rev().find_map(|n| {
        let prefix = path[..n].join("::");
        LAYERS
            .iter()
            .position(|(_, modules)| modules.contains(&prefix.as_str()))
    })
}

/// The text without comment lines (doc comments name paths that are not imports).
fn code(text: &str) -> String {
    (text.lines())
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Reads `a::b::{c, d::E}`-shaped text after a `crate::`: the module paths it names (lower-case
/// segments only: a type, function or constant ends a path), a brace group expanded one path per
/// member.
fn module_paths(rest: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let mut segs = prefix.to_vec();
    let mut s = rest;
    loop {
        if let Some(group) = s.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            let body = &group[..end];
            let (mut depth, mut start) = (0, 0);
            for (i, c) in body.char_indices().chain([(body.len(), ',')]) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let member = body[start..i].trim();
                        if member == "self" || member.starts_with(|c: char| c.is_ascii_uppercase())
                        {
                            out.push(segs.clone());
                        } else if !member.is_empty() {
                            module_paths(member, &segs, out);
                        }
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            return;
        }
        let len = s.find(|c| !is_ident(c)).unwrap_or(s.len());
        let ident = &s[..len];
        if ident.is_empty() || ident.starts_with(|c: char| c.is_ascii_uppercase()) {
            break;
        }
        segs.push(ident.to_string());
        match s[len..].strip_prefix("::") {
            Some(next) => s = next,
            None => break,
        }
    }
    if !segs.is_empty() {
        out.push(segs);
    }
}

/// Every module path `file` names: `crate::...` anywhere in its code, and `super::...` in its
/// top-level `use` lines (an indented one is inside an inline module, whose `super` differs).
fn imports(file: &Path) -> Vec<Vec<String>> {
    let text = code(&std::fs::read_to_string(file).expect("read source"));
    let me = module_of(file);
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == '$') {
            continue;
        }
        module_paths(&text[i + "crate::".len()..], &[], &mut out);
    }
    for line in text.lines() {
        let rest = ["use super::", "pub use super::", "pub(crate) use super::"]
            .iter()
            .find_map(|p| line.strip_prefix(p));
        if let Some(rest) = rest {
            module_paths(rest, &me[..me.len() - 1], &mut out);
        }
    }
    out
}

fn rel(file: &Path) -> String {
    let rel = file
        .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")))
        .expect("in crate");
    rel.to_string_lossy().into_owned()
}

/// An import that runs up: (file, imported path, file's layer, import's layer).
type Upward = (String, String, usize, usize);

/// Every upward import in the crate: (file, imported path, file's layer, import's layer), and
/// every module no layer lists.
fn upward() -> (BTreeSet<Upward>, BTreeSet<String>) {
    let (mut up, mut unmapped) = (BTreeSet::new(), BTreeSet::new());
    for file in sources(&src()) {
        let me = module_of(&file);
        // The binary's files and the crate root name the library through `understudy::`.
        if matches!(me[0].as_str(), "main" | "admin_cli" | "lib") {
            continue;
        }
        let Some(mine) = layer_of(&me) else {
            unmapped.insert(me.join("::"));
            continue;
        };
        for path in imports(&file) {
            match layer_of(&path) {
                Some(theirs) if theirs > mine => {
                    up.insert((rel(&file), path.join("::"), mine, theirs));
                }
                Some(_) => {}
                None => {
                    unmapped.insert(path.join("::"));
                }
            }
        }
    }
    (up, unmapped)
}

#[test]
fn imports_run_down_the_layers() {
    let (up, unmapped) = upward();
    assert!(
        unmapped.is_empty(),
        "modules no layer lists (add them to LAYERS here and to the layering in src/lib.rs): {unmapped:?}"
    );
    let offending: Vec<String> = (up.iter())
        .map(|(file, path, mine, theirs)| {
            format!(
                "{file} ({}) imports crate::{path} ({})",
                LAYERS[*mine].0, LAYERS[*theirs].0
            )
        })
        .collect();
    assert!(
        offending.is_empty(),
        "imports that run up the layers (a lower layer must not name a higher one; pass what it \
         needs down, or give it a trait or channel of its own):\n  {}",
        offending.join("\n  ")
    );
}

#[test]
fn core_names_no_socket_or_runtime_io() {
    let mut found = Vec::new();
    for file in sources(&src().join("core")) {
        let text = code(&std::fs::read_to_string(&file).expect("read source"));
        for name in CORE_FORBIDDEN {
            let named = text.match_indices(name).any(|(i, _)| {
                let before = text[..i].chars().next_back();
                let after = &text[i + name.len()..];
                !before.is_some_and(|c| is_ident(c) || c == ':')
                    && (after.starts_with("::") || after.starts_with(';'))
            });
            if named {
                found.push(format!("{} names {name}", rel(&file)));
            }
        }
    }
    assert!(
        found.is_empty(),
        "core is plain Rust with no sockets or runtime I/O:\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn the_reader_sees_imports() {
    // The parser itself: a brace group, a nested group, `self`, and a type ending a path.
    let mut out = Vec::new();
    module_paths(
        "upstream::{self, error::ErrorClass, lanes::{Lanes, queue::Turns}, Vendor};",
        &[],
        &mut out,
    );
    let got: Vec<String> = out.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        got,
        [
            "upstream",
            "upstream::error",
            "upstream::lanes",
            "upstream::lanes::queue",
            "upstream"
        ]
    );
    let path = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    assert_eq!(layer_of(&path("failover::machine::tests")), Some(0));
    assert_eq!(layer_of(&path("failover::driver")), Some(3));
    assert_eq!(layer_of(&path("app::reload")), Some(LAYERS.len() - 1));
    assert_eq!(layer_of(&path("nowhere")), None);
}
