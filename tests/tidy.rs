//! The tidy test: conventions of this repository, checked by plain `cargo test`.
//!
//! - engine crates never depend on host crates, nor on anything that speaks HTTP or SQL;
//! - only `server` (and this test package) names concrete storage backends;
//! - every crate sits one level deep in `engine/` or `host/`, folder name = package name,
//!   unpublished, with the workspace lints;
//! - the codemaps (`engine/README.md`, `host/README.md`) name every crate of their half;
//! - no hidden tests (no ignore or should-panic attributes);
//! - `bindgen!` appears in at most one crate, `engine/plugin-runtime`;
//! - migrations are numbered `NNNN_name.sql` and numbers are unique per backend.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

fn crates(half: &str) -> Vec<(String, toml::Table)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join(half)).expect("half dir") {
        let path = entry.expect("entry").path();
        let manifest = path.join("Cargo.toml");
        if manifest.exists() {
            let text = std::fs::read_to_string(&manifest).expect("read manifest");
            let table: toml::Table = text.parse().expect("parse manifest");
            let folder = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .to_string();
            out.push((folder, table));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn deps(t: &toml::Table) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for key in ["dependencies", "dev-dependencies", "build-dependencies"] {
        if let Some(d) = t.get(key).and_then(|v| v.as_table()) {
            out.extend(d.keys().cloned());
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if name == "target" || name.starts_with('.') {
            continue;
        }
        if p.is_dir() {
            rust_files(&p, out);
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

#[test]
fn crates_are_flat_named_after_their_folder_unpublished_and_linted() {
    for half in ["engine", "host"] {
        for (folder, t) in crates(half) {
            let pkg = t["package"].as_table().expect("[package]");
            assert_eq!(
                pkg["name"].as_str(),
                Some(folder.as_str()),
                "{half}/{folder}: folder = package name"
            );
            assert!(
                pkg.contains_key("publish"),
                "{half}/{folder}: publish must be set (false)"
            );
            assert!(
                t.contains_key("lints"),
                "{half}/{folder}: [lints] workspace = true"
            );
        }
    }
}

#[test]
fn the_engine_never_depends_on_the_host_nor_speaks_http_or_sql() {
    let host: BTreeSet<String> = crates("host").into_iter().map(|(f, _)| f).collect();
    let io = [
        "axum",
        "hyper",
        "tonic",
        "reqwest",
        "sqlx",
        "tower-http",
        "http",
    ];
    for (folder, t) in crates("engine") {
        for d in deps(&t) {
            assert!(
                !host.contains(&d),
                "engine/{folder} depends on host crate {d}"
            );
            assert!(
                !io.contains(&d.as_str()),
                "engine/{folder} depends on {d}: the engine never touches HTTP or SQL"
            );
        }
    }
}

#[test]
fn only_the_server_names_concrete_backends() {
    let backends: BTreeSet<String> = crates("host")
        .into_iter()
        .map(|(f, _)| f)
        .filter(|f| f.starts_with("storage-"))
        // The metadata store written once; it names no database, the SQL backends build on it.
        .filter(|f| f != "storage-sql")
        .collect();
    for half in ["engine", "host"] {
        for (folder, t) in crates(half) {
            if folder == "server" {
                continue;
            }
            for d in deps(&t) {
                assert!(
                    !backends.contains(&d),
                    "{half}/{folder} names backend {d}; only server may"
                );
            }
        }
    }
}

#[test]
fn codemaps_name_every_crate() {
    for half in ["engine", "host"] {
        let map = std::fs::read_to_string(root().join(half).join("README.md"))
            .unwrap_or_else(|_| panic!("{half}/README.md (the codemap) is missing"));
        for (folder, _) in crates(half) {
            assert!(
                map.contains(&format!("`{folder}`")),
                "{half}/README.md does not describe `{folder}`"
            );
        }
    }
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    assert!(
        readme.contains("engine/README.md") && readme.contains("host/README.md"),
        "README links the codemaps"
    );
}

#[test]
fn no_test_is_hidden_and_bindgen_lives_in_one_crate() {
    let mut files = Vec::new();
    for dir in ["engine", "host", "plugins", "tests", "examples"] {
        rust_files(&root().join(dir), &mut files);
    }
    let (ignore, should_panic, bindgen) = (
        ["#[", "ignore]"].concat(),
        ["#[", "should_panic"].concat(),
        ["bindgen", "!("].concat(),
    );
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        let rel = f.strip_prefix(root()).unwrap_or(&f).display().to_string();
        assert!(
            !text.contains(&ignore),
            "{rel}: no ignore attribute; a test that needs a service checks its env var"
        );
        assert!(
            !text.contains(&should_panic),
            "{rel}: no should-panic attribute; assert on the error instead"
        );
        if text.contains(&bindgen) {
            assert!(
                rel.starts_with("engine/plugin-runtime/"),
                "{rel}: only engine/plugin-runtime runs bindgen!"
            );
        }
    }
}

#[test]
fn migrations_are_numbered_and_unique() {
    for backend in ["sqlite", "postgres", "clickhouse"] {
        let dir = root().join("migrations").join(backend);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut seen = BTreeSet::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name == "README.md" || name == ".gitkeep" {
                continue;
            }
            let (num, rest) = name.split_once('_').unwrap_or(("", ""));
            assert!(
                num.len() == 4 && num.bytes().all(|b| b.is_ascii_digit()) && rest.ends_with(".sql"),
                "migrations/{backend}/{name}: want NNNN_name.sql"
            );
            assert!(
                seen.insert(num.to_string()),
                "migrations/{backend}: number {num} used twice"
            );
        }
    }
}
