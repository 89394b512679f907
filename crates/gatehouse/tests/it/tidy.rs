//! Tidy: the conventions a machine can check, run under `cargo test`
//! (after rust-analyzer's `xtask/src/tidy.rs`). Each check is a function
//! of a directory tree that returns what is wrong with it; the tests run
//! it on this repository, and on a small tree with a planted violation, so
//! that a check that stopped seeing anything would fail too.
//!
//! - Every path `ARCHITECTURE.md` names exists.
//! - Both backends have migrations of the same names.
//! - The OpenAPI document lists exactly the admin routes, and no admin
//!   route is mounted but from its table (`ADMIN_ROUTES`, behind the guard).
//! - No source file is over [`LINE_LIMIT`] lines outside tests, but for
//!   the named exceptions.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// Lines a source file may have (files under a `tests` directory and files
/// named `tests.rs` are exempt).
const LINE_LIMIT: usize = 800;

/// Source files allowed over [`LINE_LIMIT`], each with its reason. An
/// exception that is no longer needed (the file is gone or short) is an
/// error too: take it off the list.
const LONG_FILE_EXCEPTIONS: &[(&str, &str)] = &[];

/// Directories that are not ours: build output, installed packages, VCS data.
const NOT_OURS: &[&str] = &["target", "node_modules", ".git"];

/// File endings that make a backticked word in `ARCHITECTURE.md` a path.
const PATH_ENDINGS: &[&str] = &[
    ".rs", ".md", ".json", ".toml", ".sql", ".mjs", ".js", ".html", ".txt", ".lock", ".sh", ".css",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every file and directory under `root` (but [`NOT_OURS`]), as
/// `/`-separated paths relative to it, sorted.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if NOT_OURS.contains(&name.as_str()) {
                continue;
            }
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap_or(&path);
            out.push(relative.to_string_lossy().replace('\\', "/"));
            if path.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// The crate (`crates/<name>`) a relative path is in, if any.
fn crate_of(path: &str) -> Option<String> {
    let mut parts = path.split('/');
    match (parts.next(), parts.next()) {
        (Some("crates"), Some(name)) => Some(format!("crates/{name}")),
        _ => None,
    }
}

/// Whether a backticked word names a file or directory: a relative path
/// (with a `/`, or ending like a source file), not a URL path (`/token`), a
/// file ending alone (`.eml`), a pattern (`{sqlite,postgres}`), a media
/// type (`application/secevent+jwt`) or code (`sql::X`).
fn looks_like_path(word: &str) -> bool {
    !word.starts_with(['/', '.'])
        && !word.contains(|c: char| c.is_whitespace() || "+:*{}[]=<>()$,;\"'&|!?@#".contains(c))
        && (word.contains('/') || PATH_ENDINGS.iter().any(|e| word.ends_with(e)))
}

/// The paths `map` (the text of an ARCHITECTURE.md) names in backticks
/// that do not exist under `root`. A path is found as written from the
/// root, or under `crates/`, or as the tail of a path: a bare file name
/// (`sql.rs`) in the crate the text is about (the crate of the last
/// directory named before it), a path with a directory (`pages/login.rs`)
/// there or else anywhere.
fn stale_paths(root: &Path, map: &str) -> Vec<String> {
    let all = tree(root);
    let mut stale = Vec::new();
    let mut current: Option<String> = None;
    for (i, word) in map.split('`').enumerate() {
        if i % 2 == 0 || !looks_like_path(word) {
            continue;
        }
        let path = word.trim_end_matches('/');
        let tail = format!("/{path}");
        let in_crate = |p: &&String| current.as_ref().is_some_and(|c| p.starts_with(&format!("{c}/")));
        let found = [path.to_owned(), format!("crates/{path}")]
            .into_iter()
            .find(|p| all.contains(p))
            .or_else(|| all.iter().filter(in_crate).find(|p| p.ends_with(&tail)).cloned())
            .or_else(|| {
                path.contains('/')
                    .then(|| all.iter().find(|p| p.ends_with(&tail)).cloned())
                    .flatten()
            });
        match found {
            Some(p) if root.join(&p).is_dir() => current = crate_of(&p).or(current),
            Some(_) => {}
            None => stale.push(format!(
                "`{word}` (read as in {})",
                current.as_deref().unwrap_or("the root")
            )),
        }
    }
    stale
}

/// Every `migrations` directory under `root` with a `sqlite` or a
/// `postgres` folder, and what differs between the two: a missing folder,
/// or a file name in one and not the other.
fn migration_mismatches(root: &Path) -> (usize, Vec<String>) {
    let names = |dir: &Path| -> Option<BTreeSet<String>> {
        let entries = fs::read_dir(dir).ok()?;
        Some(
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
        )
    };
    let mut seen = 0;
    let mut wrong = Vec::new();
    for dir in tree(root).iter().filter(|p| p.ends_with("migrations")) {
        let (sqlite, postgres) = (root.join(dir).join("sqlite"), root.join(dir).join("postgres"));
        if !sqlite.is_dir() && !postgres.is_dir() {
            continue;
        }
        seen += 1;
        match (names(&sqlite), names(&postgres)) {
            (Some(s), Some(p)) => {
                for name in s.symmetric_difference(&p) {
                    let has = if s.contains(name) { "sqlite" } else { "postgres" };
                    wrong.push(format!("{dir}: {name} only in {has}/"));
                }
            }
            _ => wrong.push(format!("{dir}: needs both sqlite/ and postgres/")),
        }
    }
    (seen, wrong)
}

/// What differs between the operations an OpenAPI document lists and
/// `routes` (method, path).
fn openapi_mismatches(doc: &Value, routes: &[(&str, &str)]) -> Vec<String> {
    const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flat_map(|o| o.keys()) {
            if METHODS.contains(&method.as_str()) {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let routed: BTreeSet<(String, String)> = routes
        .iter()
        .map(|(m, p)| (m.to_uppercase(), (*p).to_owned()))
        .collect();
    let mut wrong: Vec<String> = documented
        .difference(&routed)
        .map(|(m, p)| format!("{m} {p} documented but not routed"))
        .collect();
    wrong.extend(
        routed
            .difference(&documented)
            .map(|(m, p)| format!("{m} {p} routed but not documented")),
    );
    wrong
}

/// Source files (outside tests) that mount an `/admin` route by hand
/// (`.route("/admin...`) rather than through an `ADMIN_ROUTES` table,
/// whose routes are all behind the admin guard.
fn hand_mounted_admin_routes(root: &Path) -> Vec<String> {
    tree(root)
        .into_iter()
        .filter(|p| p.ends_with(".rs") && !p.split('/').any(|part| part == "tests"))
        .filter(|p| {
            let text = fs::read_to_string(root.join(p)).unwrap_or_default();
            let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            squeezed.contains(".route(\"/admin")
        })
        .collect()
}

/// Source files over [`LINE_LIMIT`] lines outside tests that are not
/// among `exceptions`, and exceptions that are not needed any more.
fn long_files(root: &Path, exceptions: &[(&str, &str)]) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut excepted_and_long = BTreeSet::new();
    for path in tree(root) {
        let is_test = path.split('/').any(|part| part == "tests") || path.ends_with("/tests.rs");
        if !path.ends_with(".rs") || is_test {
            continue;
        }
        let lines = fs::read_to_string(root.join(&path)).map_or(0, |text| text.lines().count());
        if lines <= LINE_LIMIT {
            continue;
        }
        if exceptions.iter().any(|(p, _)| *p == path) {
            excepted_and_long.insert(path);
        } else {
            wrong.push(format!(
                "{path}: {lines} lines (at most {LINE_LIMIT}, or a named exception)"
            ));
        }
    }
    for (path, _) in exceptions {
        if !excepted_and_long.contains(*path) {
            wrong.push(format!(
                "{path}: listed as an exception but not over {LINE_LIMIT} lines: take it off the list"
            ));
        }
    }
    wrong
}

/// A small tree to plant violations in.
fn planted(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    dir
}

#[test]
fn every_path_in_the_architecture_map_exists() {
    let root = repo_root();
    let map = fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let stale = stale_paths(&root, &map);
    assert!(
        stale.is_empty(),
        "ARCHITECTURE.md names paths that do not exist: {stale:#?}"
    );
}

#[test]
fn a_stale_path_in_the_map_is_caught() {
    let dir = planted(&[
        ("crates/store/src/lib.rs", ""),
        ("crates/pay/src/store/sql.rs", ""),
        ("crates/idp/src/pages/login.rs", ""),
    ]);
    let ok = "`crates/store` has `lib.rs`; `crates/idp` has `pages/login.rs` and `pages/`, \
              not `/login` nor `application/secevent+jwt` nor `sql::X`.";
    assert_eq!(stale_paths(dir.path(), ok), Vec::<String>::new());
    // `sql.rs` exists, but in another crate than the one the text is about.
    let stale = "`crates/store` keeps its SQL in `sql.rs`, `pages/gone.rs` and `docs/nothing.md`.";
    assert_eq!(
        stale_paths(dir.path(), stale).len(),
        3,
        "{:?}",
        stale_paths(dir.path(), stale)
    );
}

#[test]
fn migrations_have_the_same_names_on_both_backends() {
    let (seen, wrong) = migration_mismatches(&repo_root());
    assert!(
        seen >= 2,
        "the IdP's and the payments service's migrations, found {seen}"
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn a_migration_on_one_backend_only_is_caught() {
    let dir = planted(&[
        ("crates/a/migrations/sqlite/0001_init.sql", ""),
        ("crates/a/migrations/postgres/0001_init.sql", ""),
        ("crates/a/migrations/sqlite/0002_more.sql", ""),
        ("crates/b/migrations/postgres/0001_init.sql", ""),
    ]);
    let (seen, wrong) = migration_mismatches(dir.path());
    assert_eq!(seen, 2);
    assert_eq!(
        wrong,
        [
            "crates/a/migrations: 0002_more.sql only in sqlite/",
            "crates/b/migrations: needs both sqlite/ and postgres/",
        ]
    );
}

#[test]
fn the_openapi_document_lists_exactly_the_admin_routes() {
    let doc: Value =
        serde_json::from_str(&fs::read_to_string(repo_root().join("crates/idp/openapi.json")).unwrap()).unwrap();
    let routes: Vec<(&str, &str)> = gatehouse_idp::admin::ADMIN_ROUTES
        .iter()
        .map(|r| (r.method.as_str(), r.path))
        .collect();
    let wrong = openapi_mismatches(&doc, &routes);
    assert!(
        wrong.is_empty(),
        "crates/idp/openapi.json and admin::ADMIN_ROUTES: {wrong:#?}"
    );
}

#[test]
fn an_admin_route_missing_from_the_openapi_document_is_caught() {
    let doc = json!({ "paths": {
        "/admin/a": { "get": {}, "parameters": [] },
        "/admin/b": { "post": {} },
    }});
    let wrong = openapi_mismatches(&doc, &[("GET", "/admin/a"), ("DELETE", "/admin/a")]);
    assert_eq!(
        wrong,
        [
            "POST /admin/b documented but not routed",
            "DELETE /admin/a routed but not documented",
        ]
    );
}

#[test]
fn admin_routes_are_mounted_only_from_their_table() {
    let wrong = hand_mounted_admin_routes(&repo_root());
    assert!(wrong.is_empty(), "mount admin routes through ADMIN_ROUTES: {wrong:#?}");
}

#[test]
fn an_admin_route_mounted_by_hand_is_caught() {
    let dir = planted(&[
        (
            "crates/a/src/lib.rs",
            "Router::new()\n    .route(\n        \"/admin/x\",\n        get(x),\n    )",
        ),
        ("crates/a/src/ok.rs", "Router::new().route(\"/health\", get(x))"),
    ]);
    assert_eq!(hand_mounted_admin_routes(dir.path()), ["crates/a/src/lib.rs"]);
}

#[test]
fn no_source_file_is_over_the_limit() {
    let wrong = long_files(&repo_root(), LONG_FILE_EXCEPTIONS);
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn a_long_file_and_a_stale_exception_are_caught() {
    let long = "x\n".repeat(LINE_LIMIT + 1);
    let dir = planted(&[
        ("crates/a/src/big.rs", &long),
        ("crates/a/src/excused.rs", &long),
        ("crates/a/src/short.rs", "x\n"),
        ("crates/a/src/m/tests.rs", &long),
        ("crates/a/tests/it/big.rs", &long),
    ]);
    let exceptions = [("crates/a/src/excused.rs", "why"), ("crates/a/src/short.rs", "why")];
    let wrong = long_files(dir.path(), &exceptions);
    assert_eq!(wrong.len(), 2, "{wrong:#?}");
    assert!(wrong[0].starts_with("crates/a/src/big.rs: 801 lines"), "{wrong:#?}");
    assert!(
        wrong[1].starts_with("crates/a/src/short.rs: listed as an exception"),
        "{wrong:#?}"
    );
}
