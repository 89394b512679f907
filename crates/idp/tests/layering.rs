//! Tidy check: the use cases live in `crates/idp/src/flows/`. The account
//! pages, the OAuth endpoints, the admin API and the command line call them
//! and never build an audit event or an outbox message, write messages to
//! the store or wake the outbox worker themselves; and the command line
//! reaches the IdP only through its non-HTTP modules (never `admin`,
//! `pages` or `oauth`).
//!
//! Plain text search over the sources, comment lines skipped. To check
//! another checkout, set `GATEHOUSE_LAYERING_ROOT` to its `crates` folder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

/// What only a flow may write, with why.
const FLOW_ONLY: &[(&str, &str)] = &[
    ("AuditEvent::", "builds an audit event"),
    ("AuditEvent {", "builds an audit event"),
    ("OutboxMessage::new", "builds an outbox message"),
    ("OutboxMessage {", "builds an outbox message"),
    ("Signer", "signs outbox messages"),
    (".signer()", "signs outbox messages"),
    ("security_events", "builds security events"),
    ("logout_messages", "builds back-channel logout messages"),
    ("ban_events", "builds security events"),
    // The store's changes that take outbox messages.
    (".end_sessions(", "writes a change with its outbox messages"),
    (".ban(", "writes a change with its outbox messages"),
    (".unban(", "writes a change with its outbox messages"),
    (".change_password(", "writes a change with its outbox messages"),
    (".redeem_code(", "writes a change with its outbox messages"),
    (".delete_account(", "writes a change with its outbox messages"),
    ("outbox::wake", "wakes the outbox worker"),
    ("outbox_wake", "wakes the outbox worker"),
    ("notify_one", "wakes the outbox worker"),
];

/// The IdP's HTTP modules, which the command line must not use.
const HTTP_MODULES: &[&str] = &["admin", "pages", "oauth"];

/// Every violation in one file's text: `(line number, what, why)`.
fn violations(text: &str, cli: bool) -> Vec<(usize, String, String)> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        for (pattern, why) in FLOW_ONLY {
            if code.contains(pattern) {
                found.push((i + 1, (*pattern).to_owned(), (*why).to_owned()));
            }
        }
        if cli {
            for module in HTTP_MODULES {
                let path = format!("gatehouse_idp::{module}");
                // `use gatehouse_idp::{admin, ...}` names it too.
                let listed = code.starts_with("use gatehouse_idp::{")
                    && code.split(['{', '}', ',']).any(|item| {
                        let item = item.trim();
                        item == *module || item.starts_with(&format!("{module}::"))
                    });
                if code.contains(&path) || listed {
                    found.push((i + 1, path, "uses an HTTP module of the IdP".to_owned()));
                }
            }
        }
    }
    found
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for entry in entries {
            rust_files(&entry, out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

fn crates_dir() -> PathBuf {
    match std::env::var_os("GATEHOUSE_LAYERING_ROOT") {
        Some(root) => PathBuf::from(root),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    }
}

#[test]
fn handlers_and_the_cli_leave_audit_and_outbox_to_the_flows() {
    let crates = crates_dir();
    // (path, is it the command line)
    let checked = [
        ("idp/src/pages", false),
        ("idp/src/oauth", false),
        ("idp/src/admin.rs", false),
        ("gatehouse/src/cli.rs", true),
        ("gatehouse/src/cli", true),
    ];
    let mut files = Vec::new();
    for (path, cli) in checked {
        let full = crates.join(path);
        assert!(full.exists(), "{} is gone: update this test", full.display());
        let mut found = Vec::new();
        rust_files(&full, &mut found);
        files.extend(found.into_iter().map(|f| (f, cli)));
    }
    assert!(files.len() > 10, "too few sources found under {}", crates.display());
    let mut report = Vec::new();
    for (file, cli) in &files {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (line, what, why) in violations(&text, *cli) {
            report.push(format!("{}:{line}: `{what}` {why}", file.display()));
        }
    }
    assert!(
        report.is_empty(),
        "a handler or the CLI does a flow's work; move it into crates/idp/src/flows/:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_check_catches_what_handlers_used_to_do() {
    // As `pages/login.rs` logged out before the flows.
    let logout = r#"
        let audit = AuditEvent::new(AuditKind::Logout, Some(&c.account.id), &actor, now);
        let outbox = crate::outbox::logout_messages(&state, &c.account.id, c.digest(), &c.session.handle, now).await?;
        state.store.end_sessions(&c.account.id, &selector, &audit, &outbox).await?;
        crate::outbox::wake(&state, &outbox);
    "#;
    let found: Vec<String> = violations(logout, false).into_iter().map(|(_, what, _)| what).collect();
    for expected in ["AuditEvent::", "logout_messages", ".end_sessions(", "outbox::wake"] {
        assert!(found.iter().any(|f| f == expected), "{expected} not caught: {found:?}");
    }
    // As the CLI banned before the flows.
    let cli = r#"
        use gatehouse_idp::{admin, keys};
        let signer = gatehouse_idp::outbox::Signer { store, keys, issuer, logout_token_lifetime };
        let ban = gatehouse_idp::admin::ban_account(store.as_ref(), &uid, &request, "cli", now, &outbox).await?;
    "#;
    let found = violations(cli, true);
    assert!(
        found
            .iter()
            .any(|(line, what, _)| *line == 2 && what == "gatehouse_idp::admin")
    );
    assert!(
        found
            .iter()
            .any(|(line, what, _)| *line == 4 && what == "gatehouse_idp::admin")
    );
    assert!(found.iter().any(|(_, what, _)| what == "Signer"));
    // A comment may name them; outside the CLI a module may be named.
    assert!(violations("// crate::outbox::wake is the flows' job", false).is_empty());
    assert!(violations("use gatehouse_idp::admin;", false).is_empty());
}
