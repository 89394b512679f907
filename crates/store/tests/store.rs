//! The storage backends' behaviour, checked the same way on both: every test
//! below runs once on SQLite (a fresh temporary file) and once on PostgreSQL
//! (a fresh database on the server at `GATEHOUSE_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`). An unreachable PostgreSQL
//! fails the PostgreSQL tests; it never skips them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use gatehouse_core::audit::{Actor, AuditEvent, AuditKind, AuditRecord, Outcome};
use gatehouse_core::ban::Ban;
use gatehouse_core::code::{CodeEffect, CodePurpose, OneTimeCode};
use gatehouse_core::oauth::client::SigningAlg;
use gatehouse_core::oauth::grant::{AuthCode, Consent, Grant, Interaction, Redemption, RefreshToken, StoredKey};
use gatehouse_core::oauth::{Client, ClientId, GrantType, Scopes};
use gatehouse_core::session::{AuthMethod, Session, SessionSelector};
use gatehouse_core::throttle::{Policy, Window};
use gatehouse_core::{Account, AccountId, Email, OpaqueToken, Profile, Secret, Timestamp, TokenDigest};
use gatehouse_store::{
    AuditQuery, OutboxKind, OutboxMessage, OutboxSummary, PurgeBefore, Redeemed, Store, StoreError, suspension_end_key,
};
use sqlx::Connection;

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const T0: Timestamp = Timestamp(1_700_000_000);

// --- harness ----------------------------------------------------------------

enum Place {
    Sqlite { path: PathBuf },
    Postgres { admin_url: String, name: String },
}

/// A migrated store on a database of its own, and a way to reach that
/// database behind the store's back.
struct TestDb {
    store: Arc<dyn Store>,
    url: String,
    place: Place,
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}_{:x}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

impl TestDb {
    async fn sqlite() -> Self {
        let path = std::env::temp_dir().join(format!("gatehouse-store-test-{}.db", unique_suffix()));
        let url = format!("sqlite://{}", path.display());
        let store = gatehouse_store::connect(&url)
            .await
            .expect("open the SQLite test database");
        store.migrate().await.expect("migrate SQLite");
        Self {
            store,
            url,
            place: Place::Sqlite { path },
        }
    }

    async fn postgres() -> Self {
        let admin_url = std::env::var("GATEHOUSE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {admin_url}: {e}\n\
                 The store tests need a PostgreSQL server: start one, or point \
                 GATEHOUSE_TEST_POSTGRES_URL at one (a user allowed to CREATE DATABASE)."
            )
        });
        let name = format!("gh_test_{}", unique_suffix());
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {admin_url}: {e}"));
        admin.close().await.ok();
        let url = with_database(&admin_url, &name);
        let store = gatehouse_store::connect(&url)
            .await
            .expect("connect to the PostgreSQL test database");
        store.migrate().await.expect("migrate PostgreSQL");
        Self {
            store,
            url,
            place: Place::Postgres { admin_url, name },
        }
    }

    /// Runs `sql` on a connection of its own, not the store's.
    async fn raw(&self, sql: &'static str) -> Result<u64, sqlx::Error> {
        let done = match self.place {
            Place::Sqlite { .. } => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url).await?;
                sqlx::raw_sql(sql).execute(&mut conn).await?.rows_affected()
            }
            Place::Postgres { .. } => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await?;
                sqlx::raw_sql(sql).execute(&mut conn).await?.rows_affected()
            }
        };
        Ok(done)
    }

    /// Best effort: a test's leftovers must not fail it.
    async fn cleanup(&self) {
        match &self.place {
            Place::Sqlite { path } => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            Place::Postgres { admin_url, name } => {
                if let Ok(mut admin) = sqlx::PgConnection::connect(admin_url).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(&mut admin).await;
                    let _ = admin.close().await;
                }
            }
        }
    }
}

/// Runs one test on `db` and then removes the database, whether the test
/// passed or panicked.
async fn run<F, Fut>(db: TestDb, test: F)
where
    F: FnOnce(Arc<TestDb>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let db = Arc::new(db);
    let outcome = tokio::spawn(test(Arc::clone(&db))).await;
    db.cleanup().await;
    if let Err(e) = outcome {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("test task failed: {e}");
    }
}

/// Generates `sqlite::NAME` and `postgres::NAME` for each test function.
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::run(super::TestDb::sqlite().await, super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::run(super::TestDb::postgres().await, super::$name).await;
                }
            )*
        }
    };
}

backend_tests!(
    accounts_create_find_and_conflict,
    profile_round_trip_with_its_audit_event,
    change_password_marks_other_sessions,
    sessions_round_trip_touch_and_reauthenticate,
    code_works_once,
    new_code_retires_earlier_ones,
    concurrent_redeems_succeed_once,
    change_email_to_taken_address_changes_nothing,
    end_sessions_touches_only_that_account,
    throttle_counts_and_restarts,
    throttle_reservations_are_atomic,
    throttle_release_gives_one_back,
    code_attempts_are_reserved_atomically,
    audit_events_filter_and_page,
    audit_log_is_append_only,
    migrate_twice_and_ping,
    delete_account_keeps_audit_events,
    corrupt_rows_are_errors,
    clients_round_trip_conflict_and_cascade,
    clients_cached_follow_other_writers,
    public_client_origins_follow_every_writer,
    joined_reads_bring_account_and_bans,
    concurrent_codes_fail_alone,
    signing_keys_retire_and_purge,
    signing_keys_published_before_they_sign,
    interactions_round_trip,
    expired_codes_tokens_and_interactions_are_purged,
    auth_code_redeems_once_then_replay_revokes_family,
    concurrent_auth_code_redeems_issue_once,
    a_code_whose_account_went_issues_nothing,
    refresh_token_rotation_and_replay,
    grant_families_and_revocation,
    consents_put_list_and_revoke,
    session_clients_follow_sessions,
    revoked_jtis_are_remembered,
    oauth_corrupt_rows_are_errors,
    dpop_proofs_are_seen_once,
    concurrent_dpop_proofs_are_seen_once,
    grants_keep_their_dpop_key,
    outbox_claim_lease_and_outcomes,
    a_lifted_or_replaced_suspension_withdraws_its_end,
    concurrent_outbox_claims_are_disjoint,
    outbox_rows_commit_with_the_logout,
    client_key_and_revocation_writes_commit_their_audit_events,
);

// --- builders ---------------------------------------------------------------

fn email(s: &str) -> Email {
    Email::parse(s).expect("valid test address")
}

fn actor() -> Actor {
    Actor {
        ip: "192.0.2.7".into(),
        user_agent: "store-test/1.0".into(),
    }
}

fn ev(kind: AuditKind, account: Option<&AccountId>, at: Timestamp) -> AuditEvent {
    AuditEvent::new(kind, account, &actor(), at)
}

/// A change to `client` by the command line.
fn client_ev(kind: AuditKind, client: &ClientId) -> AuditEvent {
    AuditEvent::client_changed(kind, client, gatehouse_core::audit::BY_CLI, T0)
}

fn account(address: &str, now: Timestamp) -> Account {
    Account {
        id: AccountId::generate(),
        email: email(address),
        email_verified: false,
        password_hash: Secret::new(format!("$argon2id$fake${address}")),
        created_at: now,
        updated_at: now,
        profile: Profile::default(),
    }
}

async fn new_account(store: &dyn Store, address: &str) -> Account {
    let a = account(address, T0);
    store
        .create_account(&a, &ev(AuditKind::SignUp, Some(&a.id), T0))
        .await
        .unwrap();
    a
}

async fn new_session(store: &dyn Store, account: &AccountId, created_at: Timestamp) -> Session {
    let s = Session {
        id_digest: OpaqueToken::generate().digest(),
        handle: OpaqueToken::generate().expose().to_string(),
        account_id: account.clone(),
        created_at,
        auth_time: created_at,
        amr: vec![AuthMethod::Pwd],
        last_seen_at: created_at,
        user_agent: "Mozilla/5.0 (test)".into(),
        ip: "198.51.100.4".into(),
        needs_reauth: false,
    };
    store
        .create_session(&s, &ev(AuditKind::LoginSucceeded, Some(account), created_at))
        .await
        .unwrap();
    s
}

async fn new_code(
    store: &dyn Store,
    purpose: CodePurpose,
    account: &Account,
    to: &Email,
    now: Timestamp,
) -> OneTimeCode {
    let record = OneTimeCode::issue(purpose, account.id.clone(), to.clone(), now).record;
    store.insert_code(&record, None).await.unwrap();
    record
}

/// The stored session (the store reads sessions only with their account).
async fn session_of(store: &dyn Store, digest: &TokenDigest) -> Option<Session> {
    store
        .session_with_account(digest)
        .await
        .unwrap()
        .map(|(session, _)| session)
}

async fn needs_reauth(store: &dyn Store, id: &TokenDigest) -> bool {
    session_of(store, id).await.expect("session exists").needs_reauth
}

async fn audit(store: &dyn Store, account: Option<&AccountId>, kind: Option<AuditKind>) -> Vec<AuditRecord> {
    let query = AuditQuery {
        account_id: account.cloned(),
        kind,
        after_seq: None,
        limit: 0,
    };
    store.audit_events(&query).await.unwrap()
}

async fn audit_query_err(store: &dyn Store, account: Option<AccountId>) -> StoreError {
    let query = AuditQuery {
        account_id: account,
        ..Default::default()
    };
    store.audit_events(&query).await.expect_err("the read should fail")
}

fn kinds(records: &[AuditRecord]) -> Vec<AuditKind> {
    records.iter().map(|r| r.event.kind).collect()
}

// --- accounts ---------------------------------------------------------------

async fn accounts_create_find_and_conflict(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let a = account("Alice@Example.com", T0);
    s.create_account(&a, &ev(AuditKind::SignUp, Some(&a.id), T0))
        .await
        .unwrap();

    assert_eq!(s.account_by_id(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(
        s.account_by_email(&email("alice@example.com")).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(s.account_by_id(&AccountId::generate()).await.unwrap(), None);
    assert_eq!(s.account_by_email(&email("nobody@example.com")).await.unwrap(), None);

    // The same address again: refused, and nothing written, not even the event.
    let dup = account("alice@example.com", T0.plus(5));
    let err = s
        .create_account(&dup, &ev(AuditKind::SignUp, Some(&dup.id), T0.plus(5)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict("email")), "got {err:?}");
    assert_eq!(s.account_by_id(&dup.id).await.unwrap(), None);
    let sign_ups = audit(s, None, Some(AuditKind::SignUp)).await;
    assert_eq!(sign_ups.len(), 1);
    assert_eq!(sign_ups[0].event.account_id.as_ref(), Some(&a.id));
}

/// A profile is written at sign-up or later with its audit event, read back
/// by every read of the account (joined ones too), and cleared field by
/// field; an unknown account writes nothing.
async fn profile_round_trip_with_its_audit_event(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let profile = Profile {
        name: Some("Zoë O'Brien-Łukasiewicz".into()),
        given_name: Some("Zoë".into()),
        family_name: Some("O'Brien-Łukasiewicz".into()),
        preferred_username: Some("zoe".into()),
        locale: Some("pl-PL".into()),
        zoneinfo: Some("Europe/Warsaw".into()),
        updated_at: Some(T0),
    };
    let a = Account {
        profile: profile.clone(),
        ..account("zoe@example.com", T0)
    };
    s.create_account(&a, &ev(AuditKind::SignUp, Some(&a.id), T0))
        .await
        .unwrap();
    assert_eq!(s.account_by_id(&a.id).await.unwrap().unwrap().profile, profile);
    let session = new_session(s, &a.id, T0).await;
    let (_, joined) = s.session_with_account(&session.id_digest).await.unwrap().unwrap();
    assert_eq!(joined.account.profile, profile);

    let later = T0.plus(60);
    let edited = Profile {
        name: Some("Zoë".into()),
        given_name: None,
        locale: None,
        ..profile
    };
    let changed = ev(AuditKind::ProfileChanged, Some(&a.id), later);
    assert!(s.set_profile(&a.id, &edited, later, &changed).await.unwrap());
    let read = s.account_by_email(&email("zoe@example.com")).await.unwrap().unwrap();
    assert_eq!(
        read.profile,
        Profile {
            updated_at: Some(later),
            ..edited.clone()
        }
    );
    assert_eq!(read.updated_at, later);
    assert_eq!(audit(s, Some(&a.id), Some(AuditKind::ProfileChanged)).await.len(), 1);

    // No such account: nothing written, not even the event.
    let ghost = AccountId::generate();
    let event = ev(AuditKind::ProfileChanged, Some(&ghost), later);
    assert!(!s.set_profile(&ghost, &edited, later, &event).await.unwrap());
    assert!(audit(s, Some(&ghost), None).await.is_empty());
    // An account created without a profile has none.
    let plain = new_account(s, "plain@example.com").await;
    assert_eq!(
        s.account_by_id(&plain.id).await.unwrap().unwrap().profile,
        Profile::default()
    );
}

async fn change_password_marks_other_sessions(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let a = new_account(s, "bob@example.com").await;
    let kept = new_session(s, &a.id, T0).await;
    let other1 = new_session(s, &a.id, T0.plus(1)).await;
    let other2 = new_session(s, &a.id, T0.plus(2)).await;
    let c = new_account(s, "carol@example.com").await;
    let carols = new_session(s, &c.id, T0).await;

    let now = T0.plus(100);
    s.change_password(
        &a.id,
        "new-hash",
        Some(&kept.id_digest),
        now,
        &ev(AuditKind::PasswordChanged, Some(&a.id), now),
        &[],
    )
    .await
    .unwrap();
    let stored = s.account_by_id(&a.id).await.unwrap().unwrap();
    assert_eq!(stored.password_hash.expose(), "new-hash");
    assert_eq!(stored.updated_at, now);
    assert_eq!(stored.created_at, T0);
    assert!(!needs_reauth(s, &kept.id_digest).await, "the kept session stays usable");
    assert!(needs_reauth(s, &other1.id_digest).await);
    assert!(needs_reauth(s, &other2.id_digest).await);
    assert!(
        !needs_reauth(s, &carols.id_digest).await,
        "another account's session is untouched"
    );
    assert_eq!(s.account_by_id(&c.id).await.unwrap(), Some(c.clone()));

    // Without `keep`, every session of the account.
    s.change_password(
        &a.id,
        "newer-hash",
        None,
        now.plus(1),
        &ev(AuditKind::PasswordChanged, Some(&a.id), now),
        &[],
    )
    .await
    .unwrap();
    assert!(needs_reauth(s, &kept.id_digest).await);
    assert!(!needs_reauth(s, &carols.id_digest).await);
    assert_eq!(audit(s, Some(&a.id), Some(AuditKind::PasswordChanged)).await.len(), 2);
}

// --- sessions ---------------------------------------------------------------

async fn sessions_round_trip_touch_and_reauthenticate(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let a = new_account(s, "dora@example.com").await;
    let oldest = new_session(s, &a.id, T0).await;
    let newest = new_session(s, &a.id, T0.plus(10)).await;
    let middle = new_session(s, &a.id, T0.plus(5)).await;

    assert_eq!(session_of(s, &oldest.id_digest).await, Some(oldest.clone()));
    assert_eq!(session_of(s, &TokenDigest::of("no such cookie")).await, None);
    assert_eq!(
        s.sessions_of(&a.id).await.unwrap(),
        vec![newest.clone(), middle.clone(), oldest.clone()]
    );
    assert_eq!(s.sessions_of(&AccountId::generate()).await.unwrap(), vec![]);

    s.touch_session(&oldest.id_digest, T0.plus(60)).await.unwrap();
    let touched = session_of(s, &oldest.id_digest).await.unwrap();
    assert_eq!(touched.last_seen_at, T0.plus(60));
    assert_eq!(touched.auth_time, T0);

    s.change_password(
        &a.id,
        "h2",
        None,
        T0.plus(70),
        &ev(AuditKind::PasswordChanged, Some(&a.id), T0),
        &[],
    )
    .await
    .unwrap();
    let now = T0.plus(200);
    let amr = [AuthMethod::Pwd, AuthMethod::Otp];
    s.reauthenticate_session(
        &oldest.id_digest,
        now,
        &amr,
        &ev(AuditKind::Reauthenticated, Some(&a.id), now),
    )
    .await
    .unwrap();
    let back = session_of(s, &oldest.id_digest).await.unwrap();
    assert!(!back.needs_reauth);
    assert_eq!(back.auth_time, now);
    assert_eq!(back.last_seen_at, now);
    assert_eq!(back.amr, amr.to_vec());
    assert_eq!(back.created_at, T0);
    assert!(
        needs_reauth(s, &newest.id_digest).await,
        "only that session was re-authenticated"
    );
    assert_eq!(
        kinds(&audit(s, Some(&a.id), Some(AuditKind::Reauthenticated)).await),
        vec![AuditKind::Reauthenticated]
    );
}

async fn end_sessions_touches_only_that_account(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let a = new_account(s, "erin@example.com").await;
    let b = new_account(s, "frank@example.com").await;
    let a1 = new_session(s, &a.id, T0).await;
    let a2 = new_session(s, &a.id, T0.plus(1)).await;
    let a3 = new_session(s, &a.id, T0.plus(2)).await;
    let b1 = new_session(s, &b.id, T0).await;
    let revoked = |who: &AccountId| ev(AuditKind::SessionRevoked, Some(who), T0.plus(50));

    // Naming another account's session ends nothing.
    let n = s
        .end_sessions(
            &a.id,
            &SessionSelector::ByHandle(b1.handle.clone()),
            &revoked(&a.id),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 0);
    let n = s
        .end_sessions(
            &a.id,
            &SessionSelector::ById(b1.id_digest.clone()),
            &revoked(&a.id),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert!(session_of(s, &b1.id_digest).await.is_some());

    let n = s
        .end_sessions(
            &a.id,
            &SessionSelector::ByHandle(a1.handle.clone()),
            &revoked(&a.id),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(session_of(s, &a1.id_digest).await, None);

    let n = s
        .end_sessions(
            &a.id,
            &SessionSelector::AllExcept(a2.id_digest.clone()),
            &revoked(&a.id),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(session_of(s, &a3.id_digest).await, None);
    assert_eq!(s.sessions_of(&a.id).await.unwrap(), vec![a2.clone()]);

    let n = s
        .end_sessions(
            &a.id,
            &SessionSelector::ById(a2.id_digest.clone()),
            &revoked(&a.id),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let n = s
        .end_sessions(&a.id, &SessionSelector::All, &revoked(&a.id), &[])
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(s.sessions_of(&a.id).await.unwrap(), vec![]);

    // A second session of b, then All for b.
    let b2 = new_session(s, &b.id, T0.plus(3)).await;
    assert_eq!(s.sessions_of(&b.id).await.unwrap(), vec![b2, b1]);
    let n = s
        .end_sessions(&b.id, &SessionSelector::All, &revoked(&b.id), &[])
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(s.sessions_of(&b.id).await.unwrap(), vec![]);

    // The event is appended on every call, rows or not.
    assert_eq!(audit(s, Some(&a.id), Some(AuditKind::SessionRevoked)).await.len(), 6);
    assert_eq!(audit(s, Some(&b.id), Some(AuditKind::SessionRevoked)).await.len(), 1);
}

// --- one-time codes ---------------------------------------------------------

async fn code_works_once(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let a = new_account(s, "gina@example.com").await;
    let code = new_code(s, CodePurpose::VerifyEmail, &a, &a.email, T0).await;

    assert_eq!(
        s.code_by_link(CodePurpose::VerifyEmail, &code.link_digest)
            .await
            .unwrap(),
        Some(code.clone())
    );
    assert_eq!(
        s.code_by_link(CodePurpose::ResetPassword, &code.link_digest)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.code_by_link(CodePurpose::VerifyEmail, &TokenDigest::of("other"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.latest_code(&a.id, CodePurpose::VerifyEmail).await.unwrap(),
        Some(code.clone())
    );
    assert_eq!(s.latest_code(&a.id, CodePurpose::ChangeEmail).await.unwrap(), None);

    assert!(s.reserve_code_attempt(&code.id).await.unwrap());
    assert!(s.reserve_code_attempt(&code.id).await.unwrap());
    assert_eq!(
        s.latest_code(&a.id, CodePurpose::VerifyEmail)
            .await
            .unwrap()
            .unwrap()
            .attempts,
        2
    );

    let now = T0.plus(10);
    let verified = ev(AuditKind::EmailVerified, Some(&a.id), now);
    assert_eq!(
        s.redeem_code(&code, &CodeEffect::VerifyEmail, now, &verified, &[])
            .await
            .unwrap(),
        Redeemed::Done
    );
    let stored = s.account_by_id(&a.id).await.unwrap().unwrap();
    assert!(stored.email_verified);
    assert_eq!(stored.updated_at, now);
    let used = s
        .code_by_link(CodePurpose::VerifyEmail, &code.link_digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(used.used_at, Some(now));
    assert_eq!(s.latest_code(&a.id, CodePurpose::VerifyEmail).await.unwrap(), None);

    // A second click: nothing happens, no second event.
    let later = T0.plus(20);
    let again = s
        .redeem_code(&code, &CodeEffect::VerifyEmail, later, &verified, &[])
        .await
        .unwrap();
    assert_eq!(again, Redeemed::AlreadyUsed);
    let used = s
        .code_by_link(CodePurpose::VerifyEmail, &code.link_digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(used.used_at, Some(now));
    assert_eq!(audit(s, Some(&a.id), Some(AuditKind::EmailVerified)).await.len(), 1);
}

async fn new_code_retires_earlier_ones(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let a = new_account(s, "hank@example.com").await;
    let kept = new_session(s, &a.id, T0).await;
    let other = new_session(s, &a.id, T0.plus(1)).await;

    let requested = ev(AuditKind::PasswordResetRequested, Some(&a.id), T0);
    let first = OneTimeCode::issue(CodePurpose::ResetPassword, a.id.clone(), a.email.clone(), T0).record;
    s.insert_code(&first, Some(&requested)).await.unwrap();
    let verify = new_code(s, CodePurpose::VerifyEmail, &a, &a.email, T0).await;
    let second = OneTimeCode::issue(CodePurpose::ResetPassword, a.id.clone(), a.email.clone(), T0.plus(30)).record;
    s.insert_code(&second, Some(&requested)).await.unwrap();

    let retired = s
        .code_by_link(CodePurpose::ResetPassword, &first.link_digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(retired.used_at, Some(second.created_at));
    assert_eq!(
        s.latest_code(&a.id, CodePurpose::ResetPassword).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        s.latest_code(&a.id, CodePurpose::VerifyEmail).await.unwrap(),
        Some(verify),
        "other purposes stay"
    );
    assert_eq!(
        audit(s, Some(&a.id), Some(AuditKind::PasswordResetRequested))
            .await
            .len(),
        2
    );

    let now = T0.plus(40);
    let effect = CodeEffect::ResetPassword {
        new_hash: Secret::new("reset-hash".into()),
        keep: Some(kept.id_digest.clone()),
    };
    let done = ev(AuditKind::PasswordResetCompleted, Some(&a.id), now);
    assert_eq!(
        s.redeem_code(&first, &effect, now, &done, &[]).await.unwrap(),
        Redeemed::AlreadyUsed
    );
    assert_eq!(
        s.account_by_id(&a.id).await.unwrap().unwrap().password_hash,
        a.password_hash
    );

    assert_eq!(
        s.redeem_code(&second, &effect, now, &done, &[]).await.unwrap(),
        Redeemed::Done
    );
    assert_eq!(
        s.account_by_id(&a.id).await.unwrap().unwrap().password_hash.expose(),
        "reset-hash"
    );
    assert!(!needs_reauth(s, &kept.id_digest).await);
    assert!(needs_reauth(s, &other.id_digest).await);
    assert_eq!(
        audit(s, Some(&a.id), Some(AuditKind::PasswordResetCompleted))
            .await
            .len(),
        1
    );
}

async fn concurrent_redeems_succeed_once(db: Arc<TestDb>) {
    let a = new_account(db.store.as_ref(), "ivy@example.com").await;
    let code = new_code(db.store.as_ref(), CodePurpose::VerifyEmail, &a, &a.email, T0).await;
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = Arc::clone(&db.store);
        let code = code.clone();
        let event = ev(AuditKind::EmailVerified, Some(&a.id), T0.plus(i));
        tasks.push(tokio::spawn(async move {
            store
                .redeem_code(&code, &CodeEffect::VerifyEmail, T0.plus(i), &event, &[])
                .await
                .unwrap()
        }));
    }
    let mut done = 0;
    for task in tasks {
        match task.await.unwrap() {
            Redeemed::Done => done += 1,
            Redeemed::AlreadyUsed => {}
            Redeemed::EmailTaken => panic!("not an email change"),
        }
    }
    assert_eq!(done, 1);
    assert_eq!(
        audit(db.store.as_ref(), Some(&a.id), Some(AuditKind::EmailVerified))
            .await
            .len(),
        1
    );
}

async fn change_email_to_taken_address_changes_nothing(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let a = new_account(s, "jo@example.com").await;
    let b = new_account(s, "kim@example.com").await;

    let code = new_code(s, CodePurpose::ChangeEmail, &a, &b.email, T0).await;
    let now = T0.plus(10);
    let changed = ev(AuditKind::EmailChanged, Some(&a.id), now);
    assert_eq!(
        s.redeem_code(&code, &CodeEffect::ChangeEmail, now, &changed, &[])
            .await
            .unwrap(),
        Redeemed::EmailTaken
    );
    assert_eq!(s.account_by_id(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(s.account_by_id(&b.id).await.unwrap(), Some(b.clone()));
    let still = s
        .code_by_link(CodePurpose::ChangeEmail, &code.link_digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(still.used_at, None, "the code stays unused");
    assert_eq!(audit(s, Some(&a.id), Some(AuditKind::EmailChanged)).await.len(), 0);

    // A free address works, and the old one is free again.
    let new_address = email("jo.new@example.com");
    let code = new_code(s, CodePurpose::ChangeEmail, &a, &new_address, T0.plus(20)).await;
    assert_eq!(
        s.redeem_code(&code, &CodeEffect::ChangeEmail, now, &changed, &[])
            .await
            .unwrap(),
        Redeemed::Done
    );
    let stored = s.account_by_id(&a.id).await.unwrap().unwrap();
    assert_eq!(stored.email, new_address);
    assert!(stored.email_verified);
    assert_eq!(s.account_by_email(&a.email).await.unwrap(), None);
    assert_eq!(
        s.account_by_email(&new_address).await.unwrap().map(|x| x.id),
        Some(a.id.clone())
    );
    assert_eq!(audit(s, Some(&a.id), Some(AuditKind::EmailChanged)).await.len(), 1);

    // A verification code sent to an address the account no longer has is
    // used up but verifies nothing.
    let c = new_account(s, "lee@example.com").await;
    let stale = new_code(s, CodePurpose::VerifyEmail, &c, &email("lee.old@example.com"), T0).await;
    let verified = ev(AuditKind::EmailVerified, Some(&c.id), now);
    assert_eq!(
        s.redeem_code(&stale, &CodeEffect::VerifyEmail, now, &verified, &[])
            .await
            .unwrap(),
        Redeemed::Done
    );
    assert_eq!(s.account_by_id(&c.id).await.unwrap(), Some(c.clone()));
    let used = s
        .code_by_link(CodePurpose::VerifyEmail, &stale.link_digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(used.used_at, Some(now));
}

// --- throttling -------------------------------------------------------------

async fn throttle_counts_and_restarts(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let key = "login:acct:mo@example.com";
    let policy = Policy {
        max_failures: 3,
        window_secs: 900,
    };
    assert_eq!(s.throttle_window(key).await.unwrap(), None);

    let w = |started_at: Timestamp, failures: u32| Window { started_at, failures };
    assert_eq!(s.throttle_reserve(key, T0, policy).await.unwrap(), Some(w(T0, 1)));
    assert_eq!(
        s.throttle_reserve(key, T0.plus(10), policy).await.unwrap(),
        Some(w(T0, 2))
    );
    assert_eq!(
        s.throttle_reserve(key, T0.plus(899), policy).await.unwrap(),
        Some(w(T0, 3))
    );
    // Full: refused, and the refusal changes nothing.
    assert_eq!(s.throttle_reserve(key, T0.plus(899), policy).await.unwrap(), None);
    assert_eq!(s.throttle_window(key).await.unwrap(), Some(w(T0, 3)));

    // The window is over: a new one starts now.
    let later = T0.plus(900);
    assert_eq!(s.throttle_reserve(key, later, policy).await.unwrap(), Some(w(later, 1)));
    assert_eq!(
        s.throttle_reserve(key, later.plus(1), policy).await.unwrap(),
        Some(w(later, 2))
    );

    let other = "login:addr:203.0.113.9";
    assert_eq!(s.throttle_reserve(other, T0, policy).await.unwrap(), Some(w(T0, 1)));
    s.throttle_clear(key).await.unwrap();
    assert_eq!(s.throttle_window(key).await.unwrap(), None);
    assert_eq!(s.throttle_window(other).await.unwrap(), Some(w(T0, 1)));
    s.throttle_clear("never-seen").await.unwrap();
}

/// 40 reservations at once, from two store processes on the same database
/// (two instances): exactly the limit are granted, each count once.
async fn throttle_reservations_are_atomic(db: Arc<TestDb>) {
    let key = "login:addr:203.0.113.10";
    let policy = Policy {
        max_failures: 5,
        window_secs: 900,
    };
    let other = gatehouse_store::connect(&db.url).await.unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(40));
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 {
            Arc::clone(&db.store)
        } else {
            Arc::clone(&other)
        };
        let start = Arc::clone(&start);
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            store
                .throttle_reserve(key, T0, policy)
                .await
                .unwrap()
                .map(|w| w.failures)
        }));
    }
    let mut granted = Vec::new();
    for task in tasks {
        if let Some(n) = task.await.unwrap() {
            granted.push(n);
        }
    }
    granted.sort_unstable();
    assert_eq!(granted, vec![1, 2, 3, 4, 5], "the limit and no more, each counted once");
    assert_eq!(
        db.store.throttle_window(key).await.unwrap(),
        Some(Window {
            started_at: T0,
            failures: 5
        })
    );
}

async fn throttle_release_gives_one_back(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let key = "pin:someone";
    let policy = Policy {
        max_failures: 2,
        window_secs: 900,
    };
    let first = s.throttle_reserve(key, T0, policy).await.unwrap().unwrap();
    let second = s.throttle_reserve(key, T0, policy).await.unwrap().unwrap();
    assert_eq!(s.throttle_reserve(key, T0, policy).await.unwrap(), None);
    // A success gives its attempt back: room for one more.
    s.throttle_release(key, second.started_at).await.unwrap();
    assert_eq!(s.throttle_window(key).await.unwrap().unwrap().failures, 1);
    assert!(s.throttle_reserve(key, T0.plus(1), policy).await.unwrap().is_some());
    // A release for a window that has ended gives nothing to the new one.
    let later = T0.plus(900);
    assert_eq!(
        s.throttle_reserve(key, later, policy).await.unwrap().unwrap().failures,
        1
    );
    s.throttle_release(key, first.started_at).await.unwrap();
    assert_eq!(s.throttle_window(key).await.unwrap().unwrap().failures, 1);
    // Never below zero, and nothing for an unknown key.
    s.throttle_release(key, later).await.unwrap();
    s.throttle_release(key, later).await.unwrap();
    assert_eq!(s.throttle_window(key).await.unwrap().unwrap().failures, 0);
    s.throttle_release("never-seen", T0).await.unwrap();
    assert_eq!(s.throttle_window("never-seen").await.unwrap(), None);
}

/// 40 guesses of one code at once, from two store processes: exactly
/// `MAX_ATTEMPTS` are let through; none for a used code or an unknown id.
async fn code_attempts_are_reserved_atomically(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let a = new_account(s, "ivo@example.com").await;
    let code = new_code(s, CodePurpose::VerifyEmail, &a, &a.email, T0).await;
    let other = gatehouse_store::connect(&db.url).await.unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(40));
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 {
            Arc::clone(&db.store)
        } else {
            Arc::clone(&other)
        };
        let (id, start) = (code.id.clone(), Arc::clone(&start));
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            store.reserve_code_attempt(&id).await.unwrap()
        }));
    }
    let mut granted = 0;
    for task in tasks {
        granted += u32::from(task.await.unwrap());
    }
    assert_eq!(granted, gatehouse_core::code::MAX_ATTEMPTS);
    let stored = s.latest_code(&a.id, CodePurpose::VerifyEmail).await.unwrap().unwrap();
    assert_eq!(stored.attempts, gatehouse_core::code::MAX_ATTEMPTS);
    assert!(!s.reserve_code_attempt("no-such-code").await.unwrap());

    let fresh = new_code(s, CodePurpose::VerifyEmail, &a, &a.email, T0.plus(1)).await;
    let verified = ev(AuditKind::EmailVerified, Some(&a.id), T0.plus(2));
    s.redeem_code(&fresh, &CodeEffect::VerifyEmail, T0.plus(2), &verified, &[])
        .await
        .unwrap();
    assert!(
        !s.reserve_code_attempt(&fresh.id).await.unwrap(),
        "a used code takes no guesses"
    );
}

// --- audit log --------------------------------------------------------------

async fn audit_events_filter_and_page(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let a = new_account(s, "nia@example.com").await;
    let b = new_account(s, "olu@example.com").await;
    let anonymous_failure = ev(AuditKind::LoginFailed, None, T0.plus(1)).failed("unknown_account");
    let a_ok = ev(AuditKind::LoginSucceeded, Some(&a.id), T0.plus(2));
    let a_failed = ev(AuditKind::LoginFailed, Some(&a.id), T0.plus(3)).failed("bad_password");
    let b_detail = ev(AuditKind::LoginSucceeded, Some(&b.id), T0.plus(4))
        .with_detail(serde_json::json!({"n": 1, "list": [1, "two", null], "nested": {"ok": true}}));
    for event in [&anonymous_failure, &a_ok, &a_failed, &b_detail] {
        s.append_audit(event).await.unwrap();
    }

    let all = audit(s, None, None).await;
    assert_eq!(all.len(), 6);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "oldest first");
    assert_eq!(all[2].event, anonymous_failure);
    assert_eq!(all[4].event, a_failed);
    assert_eq!(all[4].event.outcome, Outcome::Failure);
    assert_eq!(all[5].event, b_detail, "detail JSON round-trips");

    let of_a = audit(s, Some(&a.id), None).await;
    assert_eq!(
        kinds(&of_a),
        vec![AuditKind::SignUp, AuditKind::LoginSucceeded, AuditKind::LoginFailed]
    );
    let failures = audit(s, None, Some(AuditKind::LoginFailed)).await;
    assert_eq!(
        failures.iter().map(|r| r.event.clone()).collect::<Vec<_>>(),
        vec![anonymous_failure, a_failed.clone()]
    );
    let a_failures = audit(s, Some(&a.id), Some(AuditKind::LoginFailed)).await;
    assert_eq!(a_failures.len(), 1);
    assert_eq!(a_failures[0].event.detail["reason"], "bad_password");
    assert_eq!(audit(s, Some(&AccountId::generate()), None).await, vec![]);

    // Paging forward.
    let page = |after_seq: Option<i64>, limit: u32| AuditQuery {
        account_id: None,
        kind: None,
        after_seq,
        limit,
    };
    let first = s.audit_events(&page(None, 2)).await.unwrap();
    assert_eq!(first, all[..2].to_vec());
    let rest = s.audit_events(&page(Some(first[1].seq), 0)).await.unwrap();
    assert_eq!(rest, all[2..].to_vec());
    let none = s.audit_events(&page(Some(all[5].seq), 10)).await.unwrap();
    assert_eq!(none, vec![]);
    let of_a_after = s
        .audit_events(&AuditQuery {
            account_id: Some(a.id.clone()),
            kind: None,
            after_seq: Some(of_a[0].seq),
            limit: 1,
        })
        .await
        .unwrap();
    assert_eq!(of_a_after, vec![of_a[1].clone()]);
}

async fn audit_log_is_append_only(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let a = new_account(s, "pat@example.com").await;
    let before = audit(s, None, None).await;
    assert_eq!(before.len(), 1);

    for statement in ["UPDATE audit_events SET kind = 'logout'", "DELETE FROM audit_events"] {
        let err = db.raw(statement).await.expect_err(statement);
        assert!(err.to_string().contains("append-only"), "{statement}: {err}");
    }
    if matches!(db.place, Place::Postgres { .. }) {
        let err = db.raw("TRUNCATE audit_events").await.expect_err("TRUNCATE");
        assert!(err.to_string().contains("append-only"), "TRUNCATE: {err}");
    }
    // Deleting the account leaves its events alone (no cascade into the log).
    s.delete_account(&a.id, &ev(AuditKind::AccountDeleted, Some(&a.id), T0), &[])
        .await
        .unwrap();
    let after = audit(s, None, None).await;
    assert_eq!(after[..1], before[..]);
    // Inserting stays allowed.
    db.raw(
        "INSERT INTO audit_events (at, kind, account_id, ip, user_agent, outcome, detail) \
         VALUES (1, 'logout', NULL, '', '', 'success', '{}')",
    )
    .await
    .unwrap();
}

// --- lifecycle --------------------------------------------------------------

async fn migrate_twice_and_ping(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    s.migrate().await.unwrap();
    s.migrate().await.unwrap();
    s.ping().await.unwrap();
    // Still usable after migrating again.
    let a = new_account(s, "quinn@example.com").await;
    assert_eq!(s.account_by_id(&a.id).await.unwrap(), Some(a.clone()));
    // A second store on the same database migrates as a no-op too, and
    // reads what the first wrote (`connect` picked the same backend).
    let second = gatehouse_store::connect(&db.url).await.unwrap();
    second.migrate().await.unwrap();
    assert_eq!(second.account_by_id(&a.id).await.unwrap(), Some(a));
}

async fn delete_account_keeps_audit_events(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let a = new_account(s, "rae@example.com").await;
    let b = new_account(s, "sol@example.com").await;
    let a1 = new_session(s, &a.id, T0).await;
    let a2 = new_session(s, &a.id, T0.plus(1)).await;
    let b1 = new_session(s, &b.id, T0).await;
    let code = new_code(s, CodePurpose::VerifyEmail, &a, &a.email, T0).await;
    let b_code = new_code(s, CodePurpose::VerifyEmail, &b, &b.email, T0).await;
    let events_before = audit(s, Some(&a.id), None).await;

    s.delete_account(&a.id, &ev(AuditKind::AccountDeleted, Some(&a.id), T0.plus(9)), &[])
        .await
        .unwrap();

    assert_eq!(s.account_by_id(&a.id).await.unwrap(), None);
    assert_eq!(s.account_by_email(&a.email).await.unwrap(), None);
    assert_eq!(session_of(s, &a1.id_digest).await, None);
    assert_eq!(session_of(s, &a2.id_digest).await, None);
    assert_eq!(s.sessions_of(&a.id).await.unwrap(), vec![]);
    assert_eq!(
        s.code_by_link(CodePurpose::VerifyEmail, &code.link_digest)
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.latest_code(&a.id, CodePurpose::VerifyEmail).await.unwrap(), None);

    assert_eq!(s.account_by_id(&b.id).await.unwrap(), Some(b.clone()));
    assert_eq!(s.sessions_of(&b.id).await.unwrap(), vec![b1]);
    assert_eq!(
        s.latest_code(&b.id, CodePurpose::VerifyEmail).await.unwrap(),
        Some(b_code)
    );

    let events_after = audit(s, Some(&a.id), None).await;
    assert_eq!(events_after[..events_before.len()], events_before[..]);
    assert_eq!(
        kinds(&events_after[events_before.len()..]),
        vec![AuditKind::AccountDeleted]
    );

    // The address can be used again.
    new_account(s, "rae@example.com").await;
}

async fn corrupt_rows_are_errors(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    db.raw(
        "INSERT INTO accounts (id, email, email_verified, password_hash, created_at, updated_at) \
         VALUES ('broken', 'not an email', FALSE, 'x', 1, 1)",
    )
    .await
    .unwrap();
    let err = s.account_by_id(&AccountId("broken".into())).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "got {err:?}");

    let a = new_account(s, "tam@example.com").await;
    db.raw(
        "INSERT INTO audit_events (at, kind, account_id, ip, user_agent, outcome, detail) \
         VALUES (1, 'no_such_kind', NULL, '', '', 'success', '{}')",
    )
    .await
    .unwrap();
    let err = s.audit_events(&AuditQuery::default()).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "got {err:?}");
    // The readable part of the log is still readable by filter.
    assert_eq!(audit(s, Some(&a.id), None).await.len(), 1);

    db.raw(
        "INSERT INTO audit_events (at, kind, account_id, ip, user_agent, outcome, detail) \
         VALUES (1, 'logout', 'bad-detail', '', '', 'success', 'not json')",
    )
    .await
    .unwrap();
    let err = audit_query_err(s, Some(AccountId("bad-detail".into()))).await;
    assert!(matches!(err, StoreError::Corrupt(_)), "got {err:?}");
}

// --- OAuth builders ---------------------------------------------------------

fn scopes(s: &str) -> Scopes {
    Scopes::parse(s).expect("valid test scopes")
}

/// A client with every field set to something other than its default.
fn full_client(name: &str, now: Timestamp) -> Client {
    Client {
        id: ClientId::generate(),
        name: name.into(),
        secret_digest: Some(TokenDigest::of(&format!("secret of {name}"))),
        redirect_uris: vec![
            "https://rp.example.com/cb".into(),
            "http://127.0.0.1:8080/cb?x=\"quoted\"&y=ü".into(),
        ],
        post_logout_redirect_uris: vec!["https://rp.example.com/bye".into()],
        scopes: scopes("openid profile email offline_access"),
        audiences: vec!["https://api.example.com".into(), "c_other".into()],
        resource_uris: vec!["https://rp.example.com/api".into(), "urn:example:rp".into()],
        grant_types: GrantType::ALL.to_vec(),
        first_party: true,
        backchannel_logout_uri: Some("https://rp.example.com/logout".into()),
        events_uri: Some("https://rp.example.com/events".into()),
        id_token_alg: SigningAlg::EdDSA,
        created_at: now,
    }
}

async fn new_client(store: &dyn Store, name: &str, now: Timestamp) -> Client {
    let c = full_client(name, now);
    store
        .create_client(&c, &client_ev(AuditKind::ClientCreated, &c.id))
        .await
        .unwrap();
    c
}

fn auth_code(client: &Client, account: &AccountId, session: &Session, now: Timestamp) -> AuthCode {
    AuthCode {
        digest: OpaqueToken::generate_ordered(std::time::SystemTime::now()).digest(),
        client_id: client.id.clone(),
        account_id: account.clone(),
        session_digest: session.id_digest.clone(),
        sid: session.handle.clone(),
        redirect_uri: client.redirect_uris[0].clone(),
        scopes: scopes("openid offline_access"),
        nonce: Some("n-0S6_WzA2Mj".into()),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
        auth_time: session.auth_time,
        amr: vec![AuthMethod::Pwd, AuthMethod::Otp],
        acr_values: Some("urn:gatehouse:acr:password".into()),
        resources: vec!["https://api.example.com".into()],
        created_at: now,
        expires_at: now.plus(60),
        used_at: None,
        grant_id: gatehouse_core::oauth::grant::new_grant_id(std::time::SystemTime::now()),
        dpop_jkt: Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".into()),
    }
}

fn refresh_for(grant_id: &str, now: Timestamp) -> RefreshToken {
    RefreshToken {
        digest: OpaqueToken::generate().digest(),
        grant_id: grant_id.into(),
        created_at: now,
        expires_at: now.plus(30 * 86_400),
        used_at: None,
    }
}

/// A client-credentials style grant, or a narrowed child of `parent`.
fn bare_grant(client: &Client, account: Option<&AccountId>, parent: Option<&str>, now: Timestamp) -> Grant {
    Grant {
        id: gatehouse_core::oauth::grant::new_grant_id(std::time::SystemTime::now()),
        client_id: client.id.clone(),
        account_id: account.cloned(),
        scopes: scopes("payments"),
        sid: None,
        session_digest: None,
        auth_time: None,
        amr: vec![],
        resources: vec![],
        parent_id: parent.map(str::to_owned),
        dpop_jkt: None,
        created_at: now,
        revoked_at: None,
    }
}

/// Writes `grant` (and `refresh`) the one way the store writes a grant: an
/// authorization code for it, redeemed at the grant's creation time. The
/// code is issued in a session of an account of its own, so the grant's
/// account gets no session, audit event or served client from it. The
/// grant is stored as given, shapes the token endpoint never makes too (no
/// account, a parent, revoked already): the redemption writes every field.
async fn grant_by_code(store: &dyn Store, grant: &Grant, refresh: Option<&RefreshToken>) -> Result<(), StoreError> {
    let holder = new_account(
        store,
        &format!("code-{}@example.com", unique_suffix().replace('_', "-")),
    )
    .await;
    let session = new_session(store, &holder.id, grant.created_at).await;
    let code = AuthCode {
        digest: OpaqueToken::generate_ordered(std::time::SystemTime::now()).digest(),
        client_id: grant.client_id.clone(),
        account_id: grant.account_id.clone().unwrap_or(holder.id),
        session_digest: session.id_digest.clone(),
        sid: grant.sid.clone().unwrap_or_else(|| session.handle.clone()),
        redirect_uri: "https://rp.example.com/cb".into(),
        scopes: grant.scopes.clone(),
        nonce: None,
        code_challenge: None,
        auth_time: grant.auth_time.unwrap_or(session.auth_time),
        amr: grant.amr.clone(),
        acr_values: None,
        resources: grant.resources.clone(),
        created_at: grant.created_at,
        expires_at: grant.created_at.plus(60),
        used_at: None,
        grant_id: grant.id.clone(),
        dpop_jkt: grant.dpop_jkt.clone(),
    };
    store.insert_auth_code(&code).await?;
    match store
        .redeem_auth_code(&code.digest, grant, refresh, grant.created_at)
        .await?
    {
        Redemption::Issued => Ok(()),
        other => panic!("a fresh code for grant {}: {other:?}", grant.id),
    }
}

/// The stored code (the store reads codes only with their account).
async fn auth_code_of(store: &dyn Store, digest: &TokenDigest) -> Result<Option<AuthCode>, StoreError> {
    Ok(store.auth_code_with_account(digest).await?.map(|(code, _)| code))
}

async fn revoked_at(store: &dyn Store, grant: &str) -> Option<Timestamp> {
    store.grant(grant).await.unwrap().expect("grant exists").revoked_at
}

fn key(kid: &str, alg: SigningAlg, created_at: Timestamp) -> StoredKey {
    StoredKey {
        kid: kid.into(),
        alg,
        public_jwk: format!(r#"{{"kty":"OKP","kid":"{kid}"}}"#),
        private_encrypted: format!("c2VjcmV0-{kid}"),
        created_at,
        signs_from: created_at,
        retired_at: None,
    }
}

// --- OAuth clients ----------------------------------------------------------

/// The events of `kind`, as written (without their `seq`).
async fn events_of(store: &dyn Store, kind: AuditKind) -> Vec<AuditEvent> {
    audit(store, None, Some(kind))
        .await
        .into_iter()
        .map(|r| r.event)
        .collect()
}

async fn client_key_and_revocation_writes_commit_their_audit_events(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let by_admin = |kind, client: &ClientId| {
        ev(kind, None, T0)
            .by(gatehouse_core::audit::by_admin("c_ops"))
            .for_client(client)
    };

    // Clients: each change with its event, who made it and which client;
    // a write that fails or finds no client writes none.
    let c = full_client("Shop", T0);
    let created = by_admin(AuditKind::ClientCreated, &c.id);
    s.create_client(&c, &created).await.unwrap();
    assert_eq!(events_of(s, AuditKind::ClientCreated).await, vec![created.clone()]);
    let stored = audit(s, None, Some(AuditKind::ClientCreated)).await;
    assert_eq!(stored[0].event.by.as_deref(), Some("admin:c_ops"));
    assert_eq!(stored[0].event.client_id.as_ref(), Some(&c.id));
    assert!(matches!(
        s.create_client(&c, &by_admin(AuditKind::ClientCreated, &c.id)).await,
        Err(StoreError::Conflict("client"))
    ));
    assert_eq!(events_of(s, AuditKind::ClientCreated).await.len(), 1);

    let updated = by_admin(AuditKind::ClientUpdated, &c.id);
    assert!(s.update_client(&c, &updated).await.unwrap());
    let ghost = full_client("Ghost", T0);
    assert!(
        !s.update_client(&ghost, &by_admin(AuditKind::ClientUpdated, &ghost.id))
            .await
            .unwrap()
    );
    assert_eq!(events_of(s, AuditKind::ClientUpdated).await, vec![updated]);

    assert!(
        !s.delete_client(&ghost.id, &by_admin(AuditKind::ClientDeleted, &ghost.id))
            .await
            .unwrap()
    );
    assert_eq!(events_of(s, AuditKind::ClientDeleted).await, vec![]);

    // Revocations, with the account and the client that asked.
    let a = new_account(s, "rev@example.com").await;
    let grant = bare_grant(&c, Some(&a.id), None, T0);
    grant_by_code(s, &grant, None).await.unwrap();
    let grant_revoked = AuditEvent::revoked_by_client(AuditKind::GrantRevoked, Some(&a.id), &c.id, T0.plus(1));
    s.revoke_grant(&grant.id, T0.plus(1), &grant_revoked).await.unwrap();
    assert_eq!(revoked_at(s, &grant.id).await, Some(T0.plus(1)));
    assert_eq!(events_of(s, AuditKind::GrantRevoked).await, vec![grant_revoked.clone()]);
    assert_eq!(
        kinds(&audit(s, Some(&a.id), None).await),
        vec![AuditKind::SignUp, AuditKind::GrantRevoked]
    );
    let jti_revoked = AuditEvent::revoked_by_client(AuditKind::TokenRevoked, None, &c.id, T0.plus(2));
    s.revoke_jti("jti-audited", T0.plus(300), &jti_revoked).await.unwrap();
    assert!(s.jti_revoked("jti-audited").await.unwrap());
    assert_eq!(events_of(s, AuditKind::TokenRevoked).await, vec![jti_revoked]);
    assert_eq!(grant_revoked.by.as_deref(), Some(format!("client:{}", c.id).as_str()));

    let deleted = by_admin(AuditKind::ClientDeleted, &c.id);
    assert!(s.delete_client(&c.id, &deleted).await.unwrap());
    assert_eq!(events_of(s, AuditKind::ClientDeleted).await, vec![deleted]);

    // Signing keys: added and withdrawn with their events; a kid that
    // exists adds nothing and records nothing.
    let by_cli = |kind| ev(kind, None, T0).by(gatehouse_core::audit::BY_CLI);
    let added = by_cli(AuditKind::SigningKeyAdded);
    s.add_signing_key(&key("k-1", SigningAlg::ES256, T0), &added)
        .await
        .unwrap();
    s.add_signing_key(&key("k-2", SigningAlg::ES256, T0.plus(1)), &added)
        .await
        .unwrap();
    assert!(matches!(
        s.add_signing_key(&key("k-1", SigningAlg::ES256, T0.plus(2)), &added)
            .await,
        Err(StoreError::Conflict("signing key"))
    ));
    assert_eq!(
        events_of(s, AuditKind::SigningKeyAdded).await,
        vec![added.clone(), added]
    );
    let withdrawn = by_cli(AuditKind::SigningKeysWithdrawn);
    assert_eq!(
        s.withdraw_signing_keys(SigningAlg::ES256, "k-2", &withdrawn)
            .await
            .unwrap(),
        1
    );
    assert_eq!(events_of(s, AuditKind::SigningKeysWithdrawn).await, vec![withdrawn]);

    // Redelivering a message that does not exist records nothing.
    assert!(
        !s.outbox_redeliver("nope", T0, "x", &by_admin(AuditKind::OutboxRedelivered, &c.id))
            .await
            .unwrap()
    );
    assert_eq!(events_of(s, AuditKind::OutboxRedelivered).await, vec![]);
}

async fn clients_round_trip_conflict_and_cascade(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    assert_eq!(s.clients().await.unwrap(), vec![]);
    let later = new_client(s, "Later", T0.plus(10)).await;
    let first = new_client(s, "First", T0).await;
    let mut public = full_client("Public", T0.plus(10));
    public.secret_digest = None;
    public.post_logout_redirect_uris = vec![];
    public.audiences = vec![];
    public.resource_uris = vec![];
    public.grant_types = vec![GrantType::AuthorizationCode];
    public.scopes = Scopes::default();
    public.first_party = false;
    public.backchannel_logout_uri = None;
    public.events_uri = None;
    public.id_token_alg = SigningAlg::RS256;
    s.create_client(&public, &client_ev(AuditKind::ClientCreated, &public.id))
        .await
        .unwrap();

    assert_eq!(s.client(&first.id).await.unwrap(), Some(first.clone()));
    assert_eq!(s.client(&public.id).await.unwrap(), Some(public.clone()));
    assert_eq!(s.client(&ClientId::generate()).await.unwrap(), None);
    // Creation order, the id breaking the tie.
    let mut tied = vec![later.clone(), public.clone()];
    tied.sort_by(|a, b| a.id.cmp(&b.id));
    let mut expected = vec![first.clone()];
    expected.extend(tied);
    assert_eq!(s.clients().await.unwrap(), expected);

    // The same id again: refused, the stored one unchanged.
    let mut dup = full_client("Impostor", T0.plus(20));
    dup.id = first.id.clone();
    let err = s
        .create_client(&dup, &client_ev(AuditKind::ClientCreated, &dup.id))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict("client")), "got {err:?}");
    assert_eq!(s.client(&first.id).await.unwrap(), Some(first.clone()));

    // Update replaces everything but id and created_at.
    let mut changed = public.clone();
    changed.name = "Public v2".into();
    changed.secret_digest = Some(TokenDigest::of("now confidential"));
    changed.redirect_uris = vec!["https://new.example/cb".into()];
    changed.post_logout_redirect_uris = vec!["https://new.example/bye".into()];
    changed.audiences = vec!["aud".into()];
    changed.resource_uris = vec!["https://new.example/api".into()];
    changed.grant_types = vec![GrantType::ClientCredentials, GrantType::TokenExchange];
    changed.scopes = scopes("payments");
    changed.first_party = true;
    changed.backchannel_logout_uri = Some("https://new.example/bc".into());
    changed.events_uri = Some("https://new.example/ev".into());
    changed.id_token_alg = SigningAlg::ES256;
    changed.created_at = T0.plus(999);
    assert!(
        s.update_client(&changed, &client_ev(AuditKind::ClientUpdated, &changed.id))
            .await
            .unwrap()
    );
    let stored = s.client(&public.id).await.unwrap().unwrap();
    assert_eq!(
        stored,
        Client {
            created_at: public.created_at,
            ..changed.clone()
        }
    );
    let mut ghost = changed.clone();
    ghost.id = ClientId::generate();
    assert!(
        !s.update_client(&ghost, &client_ev(AuditKind::ClientUpdated, &ghost.id))
            .await
            .unwrap()
    );
    assert_eq!(s.client(&ghost.id).await.unwrap(), None);

    // Deleting takes codes, grants, refresh tokens, consents and session
    // links with it, and nothing of another client.
    let a = new_account(s, "uma@example.com").await;
    let session = new_session(s, &a.id, T0).await;
    let mut issued = Vec::new();
    for client in [&first, &later] {
        let code = auth_code(client, &a.id, &session, T0);
        s.insert_auth_code(&code).await.unwrap();
        let grant = Grant::from_code(&code, T0.plus(1));
        let refresh = refresh_for(&grant.id, T0.plus(1));
        assert_eq!(
            s.redeem_auth_code(&code.digest, &grant, Some(&refresh), T0.plus(1))
                .await
                .unwrap(),
            Redemption::Issued
        );
        let consent = Consent {
            account_id: a.id.clone(),
            client_id: client.id.clone(),
            scopes: scopes("openid"),
            granted_at: T0,
        };
        s.put_consent(&consent, &ev(AuditKind::ConsentGranted, Some(&a.id), T0))
            .await
            .unwrap();
        issued.push((code, grant, refresh));
    }
    assert!(
        s.delete_client(&first.id, &client_ev(AuditKind::ClientDeleted, &first.id))
            .await
            .unwrap()
    );
    assert!(
        !s.delete_client(&first.id, &client_ev(AuditKind::ClientDeleted, &first.id))
            .await
            .unwrap()
    );
    assert_eq!(s.client(&first.id).await.unwrap(), None);
    let (code, grant, refresh) = &issued[0];
    assert_eq!(auth_code_of(s, &code.digest).await.unwrap(), None);
    assert_eq!(s.grant(&grant.id).await.unwrap(), None);
    assert!(
        s.grant_revoked(&grant.id).await.unwrap(),
        "a deleted grant reads as revoked"
    );
    assert_eq!(s.refresh_token(&refresh.digest).await.unwrap(), None);
    assert_eq!(s.consent(&a.id, &first.id).await.unwrap(), None);
    assert_eq!(
        s.session_clients(&session.id_digest).await.unwrap(),
        vec![later.id.clone()]
    );
    let (code, grant, refresh) = &issued[1];
    assert!(auth_code_of(s, &code.digest).await.unwrap().is_some());
    assert!(s.grant(&grant.id).await.unwrap().is_some());
    assert!(s.refresh_token(&refresh.digest).await.unwrap().is_some());
    assert!(s.consent(&a.id, &later.id).await.unwrap().is_some());
    assert_eq!(s.clients().await.unwrap().len(), 2);
}

// --- signing keys -----------------------------------------------------------

/// A pre-published key: stored with a later `signs_from`, which the older
/// key keeps signing until (its retirement); a key made to sign at once
/// meanwhile retires both then, and withdrawing leaves only it.
async fn signing_keys_published_before_they_sign(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let ed = key("ed-1", SigningAlg::EdDSA, T0);
    let old = key("es-1", SigningAlg::ES256, T0);
    s.add_signing_key(&ed, &ev(AuditKind::SigningKeyAdded, None, T0))
        .await
        .unwrap();
    s.add_signing_key(&old, &ev(AuditKind::SigningKeyAdded, None, T0))
        .await
        .unwrap();
    let next = StoredKey {
        signs_from: T0.plus(400),
        ..key("es-2", SigningAlg::ES256, T0.plus(100))
    };
    s.add_signing_key(&next, &ev(AuditKind::SigningKeyAdded, None, T0))
        .await
        .unwrap();
    let old_until_next = StoredKey {
        retired_at: Some(T0.plus(400)),
        ..old.clone()
    };
    assert_eq!(
        s.signing_keys().await.unwrap(),
        vec![next.clone(), old_until_next, ed.clone()]
    );

    // Rotated again at once (a compromise): both stop at once.
    let now = key("es-3", SigningAlg::ES256, T0.plus(200));
    s.add_signing_key(&now, &ev(AuditKind::SigningKeyAdded, None, T0))
        .await
        .unwrap();
    let stopped = |k: &StoredKey| StoredKey {
        retired_at: Some(T0.plus(200)),
        ..k.clone()
    };
    assert_eq!(
        s.signing_keys().await.unwrap(),
        vec![now.clone(), stopped(&next), stopped(&old), ed.clone()]
    );
    assert_eq!(
        s.withdraw_signing_keys(
            SigningAlg::ES256,
            "es-3",
            &ev(AuditKind::SigningKeysWithdrawn, None, T0)
        )
        .await
        .unwrap(),
        2
    );
    assert_eq!(s.signing_keys().await.unwrap(), vec![now, ed]);
}

async fn signing_keys_retire_and_purge(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    assert_eq!(s.signing_keys().await.unwrap(), vec![]);
    let es1 = key("es-1", SigningAlg::ES256, T0);
    let ed1 = key("ed-1", SigningAlg::EdDSA, T0.plus(1));
    s.add_signing_key(&es1, &ev(AuditKind::SigningKeyAdded, None, T0))
        .await
        .unwrap();
    s.add_signing_key(&ed1, &ev(AuditKind::SigningKeyAdded, None, T0))
        .await
        .unwrap();
    assert_eq!(s.signing_keys().await.unwrap(), vec![ed1.clone(), es1.clone()]);

    // A new ES256 key retires the old ES256 key only.
    let es2 = key("es-2", SigningAlg::ES256, T0.plus(100));
    s.add_signing_key(&es2, &ev(AuditKind::SigningKeyAdded, None, T0))
        .await
        .unwrap();
    let es1_retired = StoredKey {
        retired_at: Some(T0.plus(100)),
        ..es1.clone()
    };
    assert_eq!(
        s.signing_keys().await.unwrap(),
        vec![es2.clone(), ed1.clone(), es1_retired.clone()]
    );

    // A third: es-1 keeps its retirement time, es-2 is retired now.
    let es3 = key("es-3", SigningAlg::ES256, T0.plus(200));
    s.add_signing_key(&es3, &ev(AuditKind::SigningKeyAdded, None, T0))
        .await
        .unwrap();
    let es2_retired = StoredKey {
        retired_at: Some(T0.plus(200)),
        ..es2.clone()
    };
    assert_eq!(
        s.signing_keys().await.unwrap(),
        vec![es3.clone(), es2_retired.clone(), ed1.clone(), es1_retired.clone()]
    );

    // Same creation time: the kid orders them, newest (greatest) first.
    let ed2 = key("ed-2", SigningAlg::EdDSA, T0.plus(200));
    s.add_signing_key(&ed2, &ev(AuditKind::SigningKeyAdded, None, T0))
        .await
        .unwrap();
    let ed1_retired = StoredKey {
        retired_at: Some(T0.plus(200)),
        ..ed1.clone()
    };
    assert_eq!(
        s.signing_keys().await.unwrap(),
        vec![
            es3.clone(),
            ed2.clone(),
            es2_retired.clone(),
            ed1_retired.clone(),
            es1_retired.clone()
        ]
    );

    // A kid taken: refused, and nothing retired.
    let dup = key("es-3", SigningAlg::ES256, T0.plus(300));
    let err = s
        .add_signing_key(&dup, &ev(AuditKind::SigningKeyAdded, None, T0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "got {err:?}");
    assert_eq!(s.signing_keys().await.unwrap()[0], es3);

    // Purging: only keys retired strictly before the cut-off.
    assert_eq!(s.purge_signing_keys(T0.plus(100)).await.unwrap(), 0);
    assert_eq!(s.purge_signing_keys(T0.plus(101)).await.unwrap(), 1);
    assert_eq!(
        s.signing_keys().await.unwrap(),
        vec![es3.clone(), ed2.clone(), es2_retired, ed1_retired]
    );
    assert_eq!(s.purge_signing_keys(T0.plus(1_000_000)).await.unwrap(), 2);
    assert_eq!(s.signing_keys().await.unwrap(), vec![es3, ed2], "current keys stay");
}

// --- interactions -----------------------------------------------------------

async fn interactions_round_trip(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let i = Interaction {
        digest: OpaqueToken::generate().digest(),
        query: "response_type=code&client_id=c_1&scope=openid%20email&state=%C3%A9".into(),
        created_at: T0,
        expires_at: T0.plus(1800),
        chosen_account: None,
    };
    assert_eq!(s.interaction(&i.digest).await.unwrap(), None);
    s.put_interaction(&i).await.unwrap();
    assert_eq!(s.interaction(&i.digest).await.unwrap(), Some(i.clone()));
    // Putting again replaces it.
    let replaced = Interaction {
        query: "prompt=login".into(),
        expires_at: T0.plus(60),
        ..i.clone()
    };
    s.put_interaction(&replaced).await.unwrap();
    assert_eq!(s.interaction(&i.digest).await.unwrap(), Some(replaced.clone()));
    // The account chosen for it (prompt=select_account) is kept.
    let chosen = Interaction {
        chosen_account: Some(AccountId::generate()),
        ..replaced
    };
    s.put_interaction(&chosen).await.unwrap();
    assert_eq!(s.interaction(&i.digest).await.unwrap(), Some(chosen));
    let other = Interaction {
        digest: OpaqueToken::generate().digest(),
        ..i.clone()
    };
    s.put_interaction(&other).await.unwrap();
    s.delete_interaction(&i.digest).await.unwrap();
    assert_eq!(s.interaction(&i.digest).await.unwrap(), None);
    assert_eq!(s.interaction(&other.digest).await.unwrap(), Some(other));
    s.delete_interaction(&i.digest).await.unwrap();
}

/// Expired interactions go at once; expired codes only after the time the
/// caller keeps them for; live ones stay. Nothing else is touched.
async fn expired_codes_tokens_and_interactions_are_purged(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let c = new_client(s, "Shop", T0).await;
    let a = new_account(s, "purge@example.com").await;
    let session = new_session(s, &a.id, T0).await;
    let interaction = |expires_at: Timestamp| Interaction {
        digest: OpaqueToken::generate().digest(),
        query: "response_type=code".into(),
        created_at: T0,
        expires_at,
        chosen_account: None,
    };
    let (gone, live) = (interaction(T0.plus(10)), interaction(T0.plus(1000)));
    s.put_interaction(&gone).await.unwrap();
    s.put_interaction(&live).await.unwrap();
    let code = |expires_at: Timestamp| AuthCode {
        expires_at,
        ..auth_code(&c, &a.id, &session, T0)
    };
    let (old, kept) = (code(T0.plus(10)), code(T0.plus(60)));
    s.insert_auth_code(&old).await.unwrap();
    s.insert_auth_code(&kept).await.unwrap();
    // Many more than one purge statement deletes.
    let many: Vec<_> = (0..1_100).map(|_| code(T0.plus(5))).collect();
    for code in &many {
        s.insert_auth_code(code).await.unwrap();
    }

    // A grant whose refresh token has expired, and one whose has not.
    let (grant, other) = (
        bare_grant(&c, Some(&a.id), None, T0),
        bare_grant(&c, Some(&a.id), None, T0),
    );
    let stale = RefreshToken {
        expires_at: T0.plus(20),
        ..refresh_for(&grant.id, T0)
    };
    let fresh = RefreshToken {
        expires_at: T0.plus(40),
        ..refresh_for(&other.id, T0)
    };
    grant_by_code(s, &grant, Some(&stale)).await.unwrap();
    grant_by_code(s, &other, Some(&fresh)).await.unwrap();

    // A throttle window that began before T0+30, and one that began after.
    let policy = gatehouse_core::throttle::PER_ACCOUNT;
    s.throttle_reserve("ended", T0, policy).await.unwrap();
    s.throttle_reserve("running", T0.plus(35), policy).await.unwrap();

    // Interactions that expired before T0+100, codes, tokens and throttle
    // windows before T0+30.
    let before = PurgeBefore {
        interactions: T0.plus(100),
        auth_codes: T0.plus(30),
        refresh_tokens: T0.plus(30),
        throttle_windows: T0.plus(30),
    };
    let purged = s.purge_expired(&before).await.unwrap();
    assert_eq!(purged, 1 + 1 + 1_100 + 1 + 1);
    assert_eq!(s.throttle_window("ended").await.unwrap(), None);
    assert!(s.throttle_window("running").await.unwrap().is_some());
    assert_eq!(s.refresh_token(&stale.digest).await.unwrap(), None);
    assert_eq!(s.refresh_token(&fresh.digest).await.unwrap(), Some(fresh.clone()));
    assert!(s.grant(&grant.id).await.unwrap().is_some(), "the grant stays");
    assert_eq!(s.interaction(&gone.digest).await.unwrap(), None);
    assert_eq!(s.interaction(&live.digest).await.unwrap(), Some(live.clone()));
    assert_eq!(auth_code_of(s, &old.digest).await.unwrap(), None);
    assert_eq!(auth_code_of(s, &many[0].digest).await.unwrap(), None);
    assert_eq!(auth_code_of(s, &kept.digest).await.unwrap(), Some(kept.clone()));
    // The session still knows it served the client.
    assert_eq!(s.session_clients(&session.id_digest).await.unwrap(), vec![c.id.clone()]);
    // Again: nothing left to purge.
    assert_eq!(s.purge_expired(&before).await.unwrap(), 0);
}

// --- codes, grants, refresh tokens --------------------------------------------

async fn auth_code_redeems_once_then_replay_revokes_family(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let c = new_client(s, "Shop", T0).await;
    let a = new_account(s, "vera@example.com").await;
    let session = new_session(s, &a.id, T0).await;
    let code = auth_code(&c, &a.id, &session, T0);
    s.insert_auth_code(&code).await.unwrap();
    assert_eq!(auth_code_of(s, &code.digest).await.unwrap(), Some(code.clone()));
    assert_eq!(auth_code_of(s, &TokenDigest::of("nope")).await.unwrap(), None);
    // The optional fields can be empty too.
    let plain = AuthCode {
        nonce: None,
        code_challenge: None,
        acr_values: None,
        resources: vec![],
        amr: vec![],
        scopes: Scopes::default(),
        dpop_jkt: None,
        ..auth_code(&c, &a.id, &session, T0)
    };
    s.insert_auth_code(&plain).await.unwrap();
    assert_eq!(auth_code_of(s, &plain.digest).await.unwrap(), Some(plain));
    let err = s.insert_auth_code(&code).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "got {err:?}");

    let now = T0.plus(5);
    let grant = Grant::from_code(&code, now);
    let refresh = refresh_for(&grant.id, now);
    assert_eq!(
        s.redeem_auth_code(&code.digest, &grant, Some(&refresh), now)
            .await
            .unwrap(),
        Redemption::Issued
    );
    assert_eq!(auth_code_of(s, &code.digest).await.unwrap().unwrap().used_at, Some(now));
    assert_eq!(s.grant(&grant.id).await.unwrap(), Some(grant.clone()));
    assert_eq!(s.refresh_token(&refresh.digest).await.unwrap(), Some(refresh.clone()));
    assert!(!s.grant_revoked(&grant.id).await.unwrap());

    // A token exchange narrowed it: a child grant, and a grandchild.
    let child = bare_grant(&c, Some(&a.id), Some(&grant.id), now.plus(1));
    grant_by_code(s, &child, None).await.unwrap();
    let grandchild = bare_grant(&c, Some(&a.id), Some(&child.id), now.plus(2));
    grant_by_code(s, &grandchild, None).await.unwrap();
    let unrelated = bare_grant(&c, None, None, now);
    grant_by_code(s, &unrelated, None).await.unwrap();

    // The code again: nothing written, the whole family revoked.
    let replay_at = T0.plus(30);
    let second = Grant {
        id: gatehouse_core::oauth::grant::new_grant_id(std::time::SystemTime::now()),
        ..Grant::from_code(&code, replay_at)
    };
    let second_refresh = refresh_for(&second.id, replay_at);
    assert_eq!(
        s.redeem_auth_code(&code.digest, &second, Some(&second_refresh), replay_at)
            .await
            .unwrap(),
        Redemption::Replayed
    );
    assert_eq!(s.grant(&second.id).await.unwrap(), None);
    assert_eq!(s.refresh_token(&second_refresh.digest).await.unwrap(), None);
    assert_eq!(auth_code_of(s, &code.digest).await.unwrap().unwrap().used_at, Some(now));
    for g in [&grant.id, &child.id, &grandchild.id] {
        assert_eq!(revoked_at(s, g).await, Some(replay_at), "{g}");
        assert!(s.grant_revoked(g).await.unwrap());
    }
    assert_eq!(revoked_at(s, &unrelated.id).await, None);
    assert!(!s.grant_revoked(&unrelated.id).await.unwrap());

    // A third try keeps the first revocation time.
    assert_eq!(
        s.redeem_auth_code(&code.digest, &second, None, replay_at.plus(10))
            .await
            .unwrap(),
        Redemption::Replayed
    );
    assert_eq!(revoked_at(s, &grant.id).await, Some(replay_at));

    assert_eq!(
        s.redeem_auth_code(&TokenDigest::of("never issued"), &second, None, now)
            .await
            .unwrap(),
        Redemption::Unknown
    );
    assert_eq!(s.grant(&second.id).await.unwrap(), None);
}

/// Codes have no foreign keys: an account that goes between the token
/// endpoint's read of the code and its redemption (not through
/// `delete_account`, which takes the codes too) leaves a code whose grant
/// cannot be written. That is a refusal, not an error.
async fn a_code_whose_account_went_issues_nothing(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let c = new_client(s, "Late", T0).await;
    let a = new_account(s, "gone@example.com").await;
    let session = new_session(s, &a.id, T0).await;
    let code = auth_code(&c, &a.id, &session, T0);
    s.insert_auth_code(&code).await.unwrap();
    db.raw("DELETE FROM accounts WHERE email = 'gone@example.com'")
        .await
        .unwrap();
    let grant = Grant::from_code(&code, T0.plus(1));
    let refresh = refresh_for(&grant.id, T0.plus(1));
    let outcome = s
        .redeem_auth_code(&code.digest, &grant, Some(&refresh), T0.plus(1))
        .await
        .unwrap();
    assert_ne!(outcome, Redemption::Issued);
    assert_eq!(s.grant(&grant.id).await.unwrap(), None);
    assert_eq!(s.refresh_token(&refresh.digest).await.unwrap(), None);
}

async fn concurrent_auth_code_redeems_issue_once(db: Arc<TestDb>) {
    let c = new_client(db.store.as_ref(), "Racer", T0).await;
    let a = new_account(db.store.as_ref(), "wes@example.com").await;
    let session = new_session(db.store.as_ref(), &a.id, T0).await;
    let code = auth_code(&c, &a.id, &session, T0);
    db.store.insert_auth_code(&code).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = Arc::clone(&db.store);
        let code = code.clone();
        tasks.push(tokio::spawn(async move {
            let grant = Grant::from_code(&code, T0.plus(i));
            let refresh = refresh_for(&grant.id, T0.plus(i));
            store
                .redeem_auth_code(&code.digest, &grant, Some(&refresh), T0.plus(i))
                .await
                .unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let issued = outcomes.iter().filter(|o| **o == Redemption::Issued).count();
    let replayed = outcomes.iter().filter(|o| **o == Redemption::Replayed).count();
    assert_eq!((issued, replayed), (1, 5), "{outcomes:?}");
    // Every replay came after the first use committed: the grant is revoked.
    assert!(db.store.grant_revoked(&code.grant_id).await.unwrap());
}

async fn refresh_token_rotation_and_replay(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let c = new_client(s, "Mobile", T0).await;
    let a = new_account(s, "xia@example.com").await;
    let grant = bare_grant(&c, Some(&a.id), None, T0);
    let first = refresh_for(&grant.id, T0);
    grant_by_code(s, &grant, Some(&first)).await.unwrap();
    assert_eq!(s.grant(&grant.id).await.unwrap(), Some(grant.clone()));
    assert_eq!(s.refresh_token(&first.digest).await.unwrap(), Some(first.clone()));
    assert_eq!(s.refresh_token(&TokenDigest::of("nope")).await.unwrap(), None);
    let err = grant_by_code(s, &grant, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "got {err:?}");
    let child = bare_grant(&c, Some(&a.id), Some(&grant.id), T0.plus(1));
    grant_by_code(s, &child, None).await.unwrap();

    let second = refresh_for(&grant.id, T0.plus(10));
    assert_eq!(
        s.rotate_refresh_token(&first.digest, &second, T0.plus(10))
            .await
            .unwrap(),
        Redemption::Issued
    );
    assert_eq!(
        s.refresh_token(&first.digest).await.unwrap().unwrap().used_at,
        Some(T0.plus(10))
    );
    assert_eq!(s.refresh_token(&second.digest).await.unwrap(), Some(second.clone()));
    assert!(!s.grant_revoked(&grant.id).await.unwrap());

    // The old one again (stolen?): nothing written, the family revoked.
    let third = refresh_for(&grant.id, T0.plus(20));
    assert_eq!(
        s.rotate_refresh_token(&first.digest, &third, T0.plus(20))
            .await
            .unwrap(),
        Redemption::Replayed
    );
    assert_eq!(s.refresh_token(&third.digest).await.unwrap(), None);
    assert_eq!(s.refresh_token(&second.digest).await.unwrap(), Some(second.clone()));
    assert_eq!(revoked_at(s, &grant.id).await, Some(T0.plus(20)));
    assert_eq!(revoked_at(s, &child.id).await, Some(T0.plus(20)));
    assert!(s.grant_revoked(&child.id).await.unwrap());

    assert_eq!(
        s.rotate_refresh_token(&TokenDigest::of("never issued"), &third, T0.plus(30))
            .await
            .unwrap(),
        Redemption::Unknown
    );
    assert_eq!(s.refresh_token(&third.digest).await.unwrap(), None);
}

async fn grant_families_and_revocation(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let c = new_client(s, "Api", T0).await;
    let root = bare_grant(&c, None, None, T0);
    let child = bare_grant(&c, None, Some(&root.id), T0);
    let sibling = bare_grant(&c, None, Some(&root.id), T0);
    let grandchild = bare_grant(&c, None, Some(&child.id), T0);
    for g in [&root, &child, &sibling, &grandchild] {
        grant_by_code(s, g, None).await.unwrap();
        assert_eq!(s.grant(&g.id).await.unwrap().as_ref(), Some(g));
        assert!(!s.grant_revoked(&g.id).await.unwrap());
    }
    assert!(s.grant_revoked("g_unknown").await.unwrap(), "unknown counts as revoked");
    assert_eq!(s.grant("g_unknown").await.unwrap(), None);

    // Revoking the middle: it and its descendants, not its parent or sibling.
    s.revoke_grant(&child.id, T0.plus(5), &ev(AuditKind::GrantRevoked, None, T0))
        .await
        .unwrap();
    assert_eq!(revoked_at(s, &child.id).await, Some(T0.plus(5)));
    assert_eq!(revoked_at(s, &grandchild.id).await, Some(T0.plus(5)));
    assert_eq!(revoked_at(s, &root.id).await, None);
    assert_eq!(revoked_at(s, &sibling.id).await, None);
    assert!(!s.grant_revoked(&root.id).await.unwrap());
    assert!(!s.grant_revoked(&sibling.id).await.unwrap());

    // Revoking the root: everything, the earlier times kept.
    s.revoke_grant(&root.id, T0.plus(9), &ev(AuditKind::GrantRevoked, None, T0))
        .await
        .unwrap();
    assert_eq!(revoked_at(s, &root.id).await, Some(T0.plus(9)));
    assert_eq!(revoked_at(s, &sibling.id).await, Some(T0.plus(9)));
    assert_eq!(revoked_at(s, &child.id).await, Some(T0.plus(5)));
    s.revoke_grant("g_unknown", T0, &ev(AuditKind::GrantRevoked, None, T0))
        .await
        .unwrap();

    // An ancestor revoked behind the descendants' back (a row written
    // revoked) still counts.
    let revoked_root = Grant {
        revoked_at: Some(T0),
        ..bare_grant(&c, None, None, T0)
    };
    grant_by_code(s, &revoked_root, None).await.unwrap();
    let below = bare_grant(&c, None, Some(&revoked_root.id), T0);
    let further = bare_grant(&c, None, Some(&below.id), T0);
    grant_by_code(s, &below, None).await.unwrap();
    grant_by_code(s, &further, None).await.unwrap();
    assert!(s.grant_revoked(&further.id).await.unwrap());
    assert_eq!(revoked_at(s, &further.id).await, None);

    // A parent that is gone counts as revoked.
    let orphan = bare_grant(&c, None, Some("g_gone"), T0);
    grant_by_code(s, &orphan, None).await.unwrap();
    assert!(s.grant_revoked(&orphan.id).await.unwrap());

    // A cycle (only possible by hand) ends the walk instead of looping.
    let x = bare_grant(&c, None, Some("g_cycle_y"), T0);
    let x = Grant {
        id: "g_cycle_x".into(),
        ..x
    };
    let y = Grant {
        id: "g_cycle_y".into(),
        parent_id: Some("g_cycle_x".into()),
        ..x.clone()
    };
    grant_by_code(s, &x, None).await.unwrap();
    grant_by_code(s, &y, None).await.unwrap();
    assert!(!s.grant_revoked(&x.id).await.unwrap());
    s.revoke_grant(&x.id, T0.plus(1), &ev(AuditKind::GrantRevoked, None, T0))
        .await
        .unwrap();
    assert!(s.grant_revoked(&y.id).await.unwrap());
}

// --- consents ---------------------------------------------------------------

async fn consents_put_list_and_revoke(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let a = new_account(s, "yuri@example.com").await;
    let b = new_account(s, "zoe@example.com").await;
    let shop = new_client(s, "Shop", T0).await;
    let blog = new_client(s, "Blog", T0).await;
    let consent = |account: &Account, client: &Client, sc: &str, at: Timestamp| Consent {
        account_id: account.id.clone(),
        client_id: client.id.clone(),
        scopes: scopes(sc),
        granted_at: at,
    };
    let said_yes = |who: &Account| ev(AuditKind::ConsentGranted, Some(&who.id), T0);

    assert_eq!(s.consent(&a.id, &shop.id).await.unwrap(), None);
    let a_shop = consent(&a, &shop, "openid", T0);
    s.put_consent(&a_shop, &said_yes(&a)).await.unwrap();
    assert_eq!(s.consent(&a.id, &shop.id).await.unwrap(), Some(a_shop.clone()));
    let a_blog = consent(&a, &blog, "openid email", T0.plus(5));
    s.put_consent(&a_blog, &said_yes(&a)).await.unwrap();
    let b_shop = consent(&b, &shop, "openid", T0.plus(1));
    s.put_consent(&b_shop, &said_yes(&b)).await.unwrap();
    assert_eq!(
        s.consents_of(&a.id).await.unwrap(),
        vec![a_blog.clone(), a_shop.clone()]
    );
    // The clients an account has used include those it consented to.
    let mut used = vec![shop.id.clone(), blog.id.clone()];
    used.sort_unstable();
    assert_eq!(s.clients_used_by(&a.id).await.unwrap(), used);
    assert_eq!(s.clients_used_by(&b.id).await.unwrap(), vec![shop.id.clone()]);

    // Replacing: new scopes and time, still one row.
    let a_shop2 = consent(&a, &shop, "openid profile email", T0.plus(10));
    s.put_consent(&a_shop2, &said_yes(&a)).await.unwrap();
    assert_eq!(s.consent(&a.id, &shop.id).await.unwrap(), Some(a_shop2.clone()));
    assert_eq!(
        s.consents_of(&a.id).await.unwrap(),
        vec![a_shop2.clone(), a_blog.clone()]
    );
    assert_eq!(audit(s, Some(&a.id), Some(AuditKind::ConsentGranted)).await.len(), 3);

    // Grants of (a, shop), one with a child, and grants of others.
    let g1 = bare_grant(&shop, Some(&a.id), None, T0);
    let g2 = bare_grant(&shop, Some(&a.id), None, T0);
    let g1_child = bare_grant(&blog, Some(&a.id), Some(&g1.id), T0);
    let a_blog_grant = bare_grant(&blog, Some(&a.id), None, T0);
    let b_shop_grant = bare_grant(&shop, Some(&b.id), None, T0);
    for g in [&g1, &g2, &g1_child, &a_blog_grant, &b_shop_grant] {
        grant_by_code(s, g, None).await.unwrap();
    }
    let now = T0.plus(50);
    let revoked_event = |who: &Account| ev(AuditKind::ConsentRevoked, Some(&who.id), now);
    assert!(
        s.revoke_consent(&a.id, &shop.id, now, &revoked_event(&a))
            .await
            .unwrap()
    );
    assert_eq!(s.consent(&a.id, &shop.id).await.unwrap(), None);
    assert_eq!(s.consents_of(&a.id).await.unwrap(), vec![a_blog.clone()]);
    assert_eq!(s.consents_of(&b.id).await.unwrap(), vec![b_shop.clone()]);
    for g in [&g1, &g2, &g1_child] {
        assert_eq!(revoked_at(s, &g.id).await, Some(now), "{}", g.id);
    }
    assert_eq!(revoked_at(s, &a_blog_grant.id).await, None);
    assert_eq!(revoked_at(s, &b_shop_grant.id).await, None);
    assert_eq!(audit(s, Some(&a.id), Some(AuditKind::ConsentRevoked)).await.len(), 1);

    // No consent (any more): false, but grants issued since still go.
    let g3 = bare_grant(&shop, Some(&a.id), None, now);
    grant_by_code(s, &g3, None).await.unwrap();
    assert!(
        !s.revoke_consent(&a.id, &shop.id, now.plus(1), &revoked_event(&a))
            .await
            .unwrap()
    );
    assert_eq!(revoked_at(s, &g3.id).await, Some(now.plus(1)));
    assert_eq!(revoked_at(s, &g1.id).await, Some(now), "the first time is kept");
    assert_eq!(audit(s, Some(&a.id), Some(AuditKind::ConsentRevoked)).await.len(), 2);

    // Deleting the account takes its consents and grants.
    s.delete_account(&a.id, &ev(AuditKind::AccountDeleted, Some(&a.id), now), &[])
        .await
        .unwrap();
    assert_eq!(s.consents_of(&a.id).await.unwrap(), vec![]);
    assert_eq!(s.grant(&a_blog_grant.id).await.unwrap(), None);
    assert_eq!(s.consents_of(&b.id).await.unwrap(), vec![b_shop]);
    assert!(s.grant(&b_shop_grant.id).await.unwrap().is_some());
}

// --- session clients --------------------------------------------------------

async fn session_clients_follow_sessions(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let a = new_account(s, "abe@example.com").await;
    let b = new_account(s, "bea@example.com").await;
    let c1 = new_client(s, "One", T0).await;
    let c2 = new_client(s, "Two", T0).await;
    let a1 = new_session(s, &a.id, T0).await;
    let a2 = new_session(s, &a.id, T0.plus(1)).await;
    let b1 = new_session(s, &b.id, T0).await;
    assert_eq!(s.session_clients(&a1.id_digest).await.unwrap(), vec![]);

    // Twice for c2 and once for c1 on a1: each recorded once, sorted.
    let mut codes = vec![];
    for (client, session) in [(&c2, &a1), (&c1, &a1), (&c2, &a1), (&c1, &a2), (&c1, &b1)] {
        let code = auth_code(client, &session.account_id, session, T0);
        s.insert_auth_code(&code).await.unwrap();
        codes.push(code);
    }
    let mut both = vec![c1.id.clone(), c2.id.clone()];
    both.sort();
    assert_eq!(s.session_clients(&a1.id_digest).await.unwrap(), both);
    assert_eq!(s.session_clients(&a2.id_digest).await.unwrap(), vec![c1.id.clone()]);
    assert_eq!(s.session_clients(&b1.id_digest).await.unwrap(), vec![c1.id.clone()]);
    // Each account's sessions' clients, across its sessions, each once.
    assert_eq!(s.clients_used_by(&a.id).await.unwrap(), both);
    assert_eq!(s.clients_used_by(&b.id).await.unwrap(), vec![c1.id.clone()]);

    // A code for a session that does not exist is refused, and not stored.
    let ghost = Session {
        id_digest: TokenDigest::of("no such session"),
        ..a1.clone()
    };
    let orphan = auth_code(&c1, &a.id, &ghost, T0);
    assert!(s.insert_auth_code(&orphan).await.is_err());
    assert_eq!(auth_code_of(s, &orphan.digest).await.unwrap(), None);

    // Ending a session forgets its clients.
    let out = ev(AuditKind::Logout, Some(&a.id), T0.plus(5));
    s.end_sessions(&a.id, &SessionSelector::ById(a1.id_digest.clone()), &out, &[])
        .await
        .unwrap();
    assert_eq!(s.session_clients(&a1.id_digest).await.unwrap(), vec![]);
    assert_eq!(s.session_clients(&a2.id_digest).await.unwrap(), vec![c1.id.clone()]);

    // So does deleting the account (its sessions go, then their links).
    s.delete_account(&a.id, &ev(AuditKind::AccountDeleted, Some(&a.id), T0.plus(6)), &[])
        .await
        .unwrap();
    assert_eq!(s.session_clients(&a2.id_digest).await.unwrap(), vec![]);
    assert_eq!(s.session_clients(&b1.id_digest).await.unwrap(), vec![c1.id.clone()]);
    assert_eq!(s.account_by_id(&a.id).await.unwrap(), None);
    // And its authorization codes (deleted by the store: they have no
    // foreign keys), not the other account's.
    for code in &codes {
        let kept = auth_code_of(s, &code.digest).await.unwrap().is_some();
        assert_eq!(kept, code.account_id == b.id, "{:?}", code.account_id);
    }
}

// --- revoked access tokens --------------------------------------------------

async fn revoked_jtis_are_remembered(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    assert!(!s.jti_revoked("jti-1").await.unwrap());
    s.revoke_jti("jti-1", T0.plus(300), &ev(AuditKind::TokenRevoked, None, T0))
        .await
        .unwrap();
    assert!(s.jti_revoked("jti-1").await.unwrap());
    assert!(!s.jti_revoked("jti-2").await.unwrap());
    // Revoking twice is fine.
    s.revoke_jti("jti-1", T0.plus(100), &ev(AuditKind::TokenRevoked, None, T0))
        .await
        .unwrap();
    s.revoke_jti("jti-1", T0.plus(600), &ev(AuditKind::TokenRevoked, None, T0))
        .await
        .unwrap();
    assert!(s.jti_revoked("jti-1").await.unwrap());
}

// --- DPoP -------------------------------------------------------------------

async fn dpop_proofs_are_seen_once(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    // Expiry is compared with the clock: these rows must outlive the test.
    let later = Timestamp::now().plus(61);
    assert!(!s.dpop_jti_seen("jkt-a", "jti-1", later).await.unwrap());
    assert!(s.dpop_jti_seen("jkt-a", "jti-1", later).await.unwrap());
    assert!(s.dpop_jti_seen("jkt-a", "jti-1", later.plus(100)).await.unwrap());
    // The same jti from another key, another jti from the same key: new.
    assert!(!s.dpop_jti_seen("jkt-b", "jti-1", later).await.unwrap());
    assert!(!s.dpop_jti_seen("jkt-a", "jti-2", later).await.unwrap());
    // A row past its expiry counts as unseen, and is taken over.
    let past = Timestamp::now().minus(10);
    assert!(!s.dpop_jti_seen("jkt-a", "jti-old", past).await.unwrap());
    assert!(!s.dpop_jti_seen("jkt-a", "jti-old", later).await.unwrap());
    assert!(s.dpop_jti_seen("jkt-a", "jti-old", later).await.unwrap());
    // Expired rows are purged now and then (one insert in 64, counted per
    // process: other tests' inserts count too), never live ones.
    for i in 0..200 {
        s.dpop_jti_seen("jkt-c", &format!("gone-{i}"), past).await.unwrap();
    }
    let left = db
        .raw("DELETE FROM dpop_jtis WHERE jkt = 'jkt-c' AND expires_at < 1800000000")
        .await
        .unwrap();
    assert!(left < 200, "{left} expired rows were never purged");
    assert!(s.dpop_jti_seen("jkt-a", "jti-1", later).await.unwrap());
}

async fn concurrent_dpop_proofs_are_seen_once(db: Arc<TestDb>) {
    let later = Timestamp::now().plus(61);
    for round in 0..5 {
        let jti = format!("race-{round}");
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let store = Arc::clone(&db.store);
                let jti = jti.clone();
                tokio::spawn(async move { store.dpop_jti_seen("jkt-r", &jti, later).await.unwrap() })
            })
            .collect();
        let mut first_uses = 0;
        for t in tasks {
            if !t.await.unwrap() {
                first_uses += 1;
            }
        }
        assert_eq!(first_uses, 1, "round {round}");
    }
}

async fn grants_keep_their_dpop_key(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let c = new_client(s, "Spa", T0).await;
    let a = new_account(s, "dee@example.com").await;
    let bound = Grant {
        dpop_jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into()),
        ..bare_grant(&c, Some(&a.id), None, T0)
    };
    let refresh = refresh_for(&bound.id, T0);
    grant_by_code(s, &bound, Some(&refresh)).await.unwrap();
    assert_eq!(s.grant(&bound.id).await.unwrap().as_ref(), Some(&bound));
    let unbound = bare_grant(&c, Some(&a.id), None, T0);
    grant_by_code(s, &unbound, None).await.unwrap();
    assert_eq!(s.grant(&unbound.id).await.unwrap().unwrap().dpop_jkt, None);
}

// --- corrupt OAuth rows -----------------------------------------------------

async fn oauth_corrupt_rows_are_errors(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let expect_corrupt = |r: Result<(), StoreError>, what: &str| match r {
        Err(StoreError::Corrupt(_)) => {}
        other => panic!("{what}: expected Corrupt, got {other:?}"),
    };
    for (id, statement) in [
        (
            "bad_json",
            "INSERT INTO clients VALUES ('bad_json', 'x', NULL, 'not json', '[]', '[]', \
             '[\"authorization_code\"]', 'openid', FALSE, NULL, NULL, 'ES256', 1, '[]')",
        ),
        (
            "not_strings",
            "INSERT INTO clients VALUES ('not_strings', 'x', NULL, '[1, 2]', '[]', '[]', \
             '[]', 'openid', FALSE, NULL, NULL, 'ES256', 2, '[]')",
        ),
        (
            "bad_grant_type",
            "INSERT INTO clients VALUES ('bad_grant_type', 'x', NULL, '[]', '[]', '[]', \
             '[\"implicit\"]', 'openid', FALSE, NULL, NULL, 'ES256', 3, '[]')",
        ),
        (
            "bad_alg",
            "INSERT INTO clients VALUES ('bad_alg', 'x', NULL, '[]', '[]', '[]', \
             '[]', 'openid', FALSE, NULL, NULL, 'HS256', 4, '[]')",
        ),
        (
            "bad_scopes",
            "INSERT INTO clients VALUES ('bad_scopes', 'x', NULL, '[]', '[]', '[]', \
             '[]', 'a\"b', FALSE, NULL, NULL, 'ES256', 5, '[]')",
        ),
    ] {
        db.raw(statement).await.unwrap();
        expect_corrupt(s.client(&ClientId(id.into())).await.map(|_| ()), id);
        expect_corrupt(s.clients().await.map(|_| ()), id);
        db.raw("DELETE FROM clients").await.unwrap();
    }

    db.raw(
        "INSERT INTO signing_keys (kid, alg, public_jwk, private_encrypted, created_at, retired_at) \
         VALUES ('k', 'none', '{}', 'x', 1, NULL)",
    )
    .await
    .unwrap();
    expect_corrupt(s.signing_keys().await.map(|_| ()), "signing key");

    let c = new_client(s, "Ok", T0).await;
    let a = new_account(s, "cy@example.com").await;
    let session = new_session(s, &a.id, T0).await;
    let code = auth_code(&c, &a.id, &session, T0);
    s.insert_auth_code(&code).await.unwrap();
    db.raw("UPDATE auth_codes SET resources = '{\"not\": \"a list\"}'")
        .await
        .unwrap();
    expect_corrupt(auth_code_of(s, &code.digest).await.map(|_| ()), "auth code");

    let grant = bare_grant(&c, Some(&a.id), None, T0);
    grant_by_code(s, &grant, None).await.unwrap();
    db.raw("UPDATE grants SET resources = 'oops'").await.unwrap();
    expect_corrupt(s.grant(&grant.id).await.map(|_| ()), "grant");

    s.put_consent(
        &Consent {
            account_id: a.id.clone(),
            client_id: c.id.clone(),
            scopes: scopes("openid"),
            granted_at: T0,
        },
        &ev(AuditKind::ConsentGranted, Some(&a.id), T0),
    )
    .await
    .unwrap();
    db.raw("UPDATE consents SET scopes = 'tab\tbed'").await.unwrap();
    expect_corrupt(s.consent(&a.id, &c.id).await.map(|_| ()), "consent");
    expect_corrupt(s.consents_of(&a.id).await.map(|_| ()), "consents");
}

// --- not backend-specific ---------------------------------------------------

#[tokio::test]
async fn unknown_url_scheme_is_refused() {
    let err = gatehouse_store::connect("mysql://localhost/db")
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(err, StoreError::UnsupportedUrl(ref s) if s == "mysql"),
        "got {err:?}"
    );
}

#[test]
fn database_name_is_replaced_in_urls() {
    assert_eq!(
        with_database("postgres://u@h:5432/postgres", "x"),
        "postgres://u@h:5432/x"
    );
    assert_eq!(with_database("postgres://u@h:5432", "x"), "postgres://u@h:5432/x");
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
}

// --- the outbox -------------------------------------------------------------

fn outbox_message(client: &Client, id: &str, now: Timestamp) -> OutboxMessage {
    OutboxMessage::new(
        id.to_owned(),
        client.id.clone(),
        OutboxKind::BackchannelLogout,
        "http://127.0.0.1:9/bcl".to_owned(),
        format!("logout_token={id}"),
        "application/x-www-form-urlencoded".to_owned(),
        now,
    )
}

/// A suspension's account-enabled, written when it is imposed and due when
/// it lifts, is deleted when the ban is lifted early or replaced (and only
/// that ban's: the same account's ban at one client keeps its own).
async fn a_lifted_or_replaced_suspension_withdraws_its_end(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let c = new_client(s, "Shop", T0).await;
    let a = new_account(s, "paused@example.com").await;
    let ends = |id: &str, client: Option<&ClientId>| OutboxMessage {
        next_attempt_at: T0.plus(100),
        withdraw_key: Some(suspension_end_key(&a.id, client)),
        ..outbox_message(&c, id, T0)
    };
    let ban = |client: Option<&ClientId>, until: Option<Timestamp>| Ban {
        account_id: a.id.clone(),
        client_id: client.cloned(),
        until,
        reason: "test".to_owned(),
        by: "cli".to_owned(),
        created_at: T0,
    };
    let ids = || async {
        let mut ids: Vec<String> = s
            .outbox_messages(None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        ids.sort();
        ids
    };
    let banned = |at| ev(AuditKind::AccountBanned, Some(&a.id), at);
    let unbanned = |at| ev(AuditKind::AccountUnbanned, Some(&a.id), at);

    // Suspended everywhere, then banned for good: the end goes.
    let first = [outbox_message(&c, "off-1", T0), ends("on-later-1", None)];
    s.ban(&ban(None, Some(T0.plus(100))), T0, &banned(T0), &first)
        .await
        .unwrap();
    assert_eq!(ids().await, ["off-1", "on-later-1"]);
    let second = [outbox_message(&c, "off-2", T0.plus(1))];
    s.ban(&ban(None, None), T0.plus(1), &banned(T0.plus(1)), &second)
        .await
        .unwrap();
    assert_eq!(ids().await, ["off-1", "off-2"]);

    // Suspended at the client too; lifting the ban everywhere keeps that end.
    let at_client = [ends("on-later-c", Some(&c.id))];
    s.ban(
        &ban(Some(&c.id), Some(T0.plus(100))),
        T0.plus(2),
        &banned(T0.plus(2)),
        &at_client,
    )
    .await
    .unwrap();
    let now_on = [outbox_message(&c, "on-now", T0.plus(3))];
    assert!(s.unban(&a.id, None, &unbanned(T0.plus(3)), &now_on).await.unwrap());
    assert_eq!(ids().await, ["off-1", "off-2", "on-later-c", "on-now"]);
    // Lifted early at the client: its end goes too.
    assert!(s.unban(&a.id, Some(&c.id), &unbanned(T0.plus(4)), &[]).await.unwrap());
    assert_eq!(ids().await, ["off-1", "off-2", "on-now"]);

    // An end already due stays: what it announces has happened.
    let due = [OutboxMessage {
        next_attempt_at: T0.plus(5),
        ..ends("on-due", None)
    }];
    s.ban(&ban(None, Some(T0.plus(5))), T0, &banned(T0), &due)
        .await
        .unwrap();
    assert!(s.unban(&a.id, None, &unbanned(T0.plus(6)), &[]).await.unwrap());
    assert_eq!(ids().await, ["off-1", "off-2", "on-due", "on-now"]);

    // No ban left to lift: nothing changes, and no event says otherwise.
    let lifted = audit(s, Some(&a.id), Some(AuditKind::AccountUnbanned)).await.len();
    assert!(!s.unban(&a.id, None, &unbanned(T0.plus(7)), &[]).await.unwrap());
    assert_eq!(
        audit(s, Some(&a.id), Some(AuditKind::AccountUnbanned)).await.len(),
        lifted
    );
}

async fn outbox_claim_lease_and_outcomes(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let c = new_client(s, "Shop", T0).await;
    let a = new_account(s, "outbox@example.com").await;
    let session = new_session(s, &a.id, T0).await;
    let messages = [outbox_message(&c, "m1", T0), outbox_message(&c, "m2", T0)];
    let ended = s
        .end_sessions(
            &a.id,
            &SessionSelector::ById(session.id_digest.clone()),
            &ev(AuditKind::Logout, Some(&a.id), T0),
            &messages,
        )
        .await
        .unwrap();
    assert_eq!(ended, 1);
    assert_eq!(
        s.outbox_summary(Some(&c.id)).await.unwrap(),
        OutboxSummary {
            pending: 2,
            ..OutboxSummary::default()
        }
    );

    // Not due before its time; leased once claimed.
    assert!(s.claim_outbox(T0.minus(1), 10, 30).await.unwrap().is_empty());
    let claimed = s.claim_outbox(T0, 10, 30).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].payload, format!("logout_token={}", claimed[0].id));
    assert_eq!(claimed[0].locked_until, Some(T0.plus(30)));
    assert!(s.claim_outbox(T0.plus(1), 10, 30).await.unwrap().is_empty());

    // One delivered, one failed and retried later; a lapsed lease frees it.
    s.outbox_delivered("m1", T0.plus(1)).await.unwrap();
    s.outbox_failed("m2", T0.plus(1), T0.plus(5), "HTTP 500", false)
        .await
        .unwrap();
    assert_eq!(
        s.outbox_summary(None).await.unwrap(),
        OutboxSummary {
            failed: 1,
            delivered: 1,
            ..OutboxSummary::default()
        }
    );
    assert!(s.claim_outbox(T0.plus(4), 10, 30).await.unwrap().is_empty());
    let again = s.claim_outbox(T0.plus(5), 10, 30).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id.as_str(), again[0].attempts), ("m2", 1));
    assert_eq!(again[0].last_error.as_deref(), Some("HTTP 500"));
    let after_lease = s.claim_outbox(T0.plus(35), 10, 30).await.unwrap();
    assert_eq!(after_lease.len(), 1, "an expired lease is taken again");

    // Dead: never claimed again, until redelivered.
    s.outbox_failed("m2", T0.plus(36), T0.plus(100), "HTTP 500", true)
        .await
        .unwrap();
    assert!(s.claim_outbox(T0.plus(1000), 10, 30).await.unwrap().is_empty());
    let listed = s.outbox_messages(Some(&c.id), 10).await.unwrap();
    let dead = listed.iter().find(|m| m.id == "m2").unwrap();
    assert_eq!(
        (dead.status(), dead.attempts, dead.dead_at),
        ("dead", 2, Some(T0.plus(36)))
    );
    assert_eq!(s.outbox_message("m2").await.unwrap().as_ref(), Some(dead));
    assert_eq!(s.outbox_message("nope").await.unwrap(), None);
    assert!(
        s.outbox_redeliver(
            "m2",
            T0.plus(1000),
            "signed again",
            &ev(AuditKind::OutboxRedelivered, None, T0)
        )
        .await
        .unwrap()
    );
    assert!(
        !s.outbox_redeliver("m1", T0.plus(1000), "x", &ev(AuditKind::OutboxRedelivered, None, T0))
            .await
            .unwrap(),
        "delivered stays delivered"
    );
    assert!(
        !s.outbox_redeliver("nope", T0.plus(1000), "x", &ev(AuditKind::OutboxRedelivered, None, T0))
            .await
            .unwrap()
    );
    assert_eq!(
        audit(s, None, Some(AuditKind::OutboxRedelivered)).await.len(),
        1,
        "only the redelivery that happened is audited"
    );
    let again = s.claim_outbox(T0.plus(1000), 10, 30).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].id.as_str(), again[0].payload.as_str()),
        ("m2", "signed again")
    );
    assert_eq!(
        s.outbox_message("m1").await.unwrap().unwrap().payload,
        "logout_token=m1"
    );

    // Deleting the client deletes its messages.
    assert!(
        s.delete_client(&c.id, &client_ev(AuditKind::ClientDeleted, &c.id))
            .await
            .unwrap()
    );
    assert_eq!(s.outbox_summary(None).await.unwrap(), OutboxSummary::default());
}

async fn concurrent_outbox_claims_are_disjoint(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let c = new_client(s, "Shop", T0).await;
    let a = new_account(s, "race@example.com").await;
    let messages: Vec<_> = (0..20).map(|i| outbox_message(&c, &format!("r{i}"), T0)).collect();
    s.end_sessions(
        &a.id,
        &SessionSelector::All,
        &ev(AuditKind::Logout, Some(&a.id), T0),
        &messages,
    )
    .await
    .unwrap();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&db.store);
            tokio::spawn(async move { store.claim_outbox(T0, 7, 30).await.unwrap() })
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for t in tasks {
        for m in t.await.unwrap() {
            assert!(seen.insert(m.id.clone()), "{} claimed twice", m.id);
        }
    }
    assert_eq!(seen.len(), 20);
}

async fn outbox_rows_commit_with_the_logout(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let c = new_client(s, "Shop", T0).await;
    let a = new_account(s, "atomic@example.com").await;
    let session = new_session(s, &a.id, T0).await;
    // A message for a client that does not exist fails the whole change.
    let mut bad = outbox_message(&c, "bad", T0);
    bad.client_id = ClientId("no-such-client".into());
    let result = s
        .end_sessions(
            &a.id,
            &SessionSelector::ById(session.id_digest.clone()),
            &ev(AuditKind::Logout, Some(&a.id), T0),
            &[outbox_message(&c, "good", T0), bad],
        )
        .await;
    assert!(result.is_err());
    assert!(
        session_of(s, &session.id_digest).await.is_some(),
        "the session did not end"
    );
    assert_eq!(s.outbox_summary(None).await.unwrap(), OutboxSummary::default());
    assert!(audit(s, Some(&a.id), Some(AuditKind::Logout)).await.is_empty());

    // Account deletion and a ban carry their messages too.
    s.delete_account(
        &a.id,
        &ev(AuditKind::AccountDeleted, Some(&a.id), T0),
        &[outbox_message(&c, "del", T0)],
    )
    .await
    .unwrap();
    let b = new_account(s, "banned@example.com").await;
    let ban = gatehouse_core::ban::Ban {
        account_id: b.id.clone(),
        client_id: None,
        until: None,
        reason: "spam".into(),
        by: "test".into(),
        created_at: T0,
    };
    s.ban(
        &ban,
        T0,
        &ev(AuditKind::AccountBanned, Some(&b.id), T0),
        &[outbox_message(&c, "ban", T0)],
    )
    .await
    .unwrap();
    assert_eq!(s.outbox_summary(Some(&c.id)).await.unwrap().pending, 2);
}

// --- client cache and joined reads ---------------------------------------

/// A second store on the same database stands for the command line or
/// another instance: once its client write has returned, this store
/// answers with it (the write waits out the cache's check interval).
async fn clients_cached_follow_other_writers(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let other = gatehouse_store::connect(&db.url).await.unwrap();
    let mut c = new_client(s, "Cached", T0).await;
    assert_eq!(s.client(&c.id).await.unwrap(), Some(c.clone()));

    c.name = "Renamed elsewhere".to_owned();
    assert!(
        other
            .update_client(&c, &client_ev(AuditKind::ClientUpdated, &c.id))
            .await
            .unwrap()
    );
    assert_eq!(s.client(&c.id).await.unwrap().unwrap().name, "Renamed elsewhere");

    c.name = "Renamed here".to_owned();
    assert!(
        s.update_client(&c, &client_ev(AuditKind::ClientUpdated, &c.id))
            .await
            .unwrap()
    );
    assert_eq!(s.client(&c.id).await.unwrap().unwrap().name, "Renamed here");

    assert!(
        other
            .delete_client(&c.id, &client_ev(AuditKind::ClientDeleted, &c.id))
            .await
            .unwrap()
    );
    assert_eq!(s.client(&c.id).await.unwrap(), None);

    // Revocations of token ids likewise.
    assert!(!s.jti_revoked("jti-1").await.unwrap());
    other
        .revoke_jti("jti-1", T0.plus(300), &ev(AuditKind::TokenRevoked, None, T0))
        .await
        .unwrap();
    assert!(s.jti_revoked("jti-1").await.unwrap());

    let d = new_client(s, "Deleted here", T0).await;
    assert!(s.client(&d.id).await.unwrap().is_some());
    assert!(
        s.delete_client(&d.id, &client_ev(AuditKind::ClientDeleted, &d.id))
            .await
            .unwrap()
    );
    assert_eq!(s.client(&d.id).await.unwrap(), None);
}

/// The origins browsers may call from (CORS) are one cached set: a public
/// client created, changed or deleted by another process (the command line)
/// is in force here once that write has returned, and so is one of our own.
async fn public_client_origins_follow_every_writer(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let other = gatehouse_store::connect(&db.url).await.unwrap();
    let spa = "https://spa.example.com";
    assert!(!s.is_public_client_origin(spa).await.unwrap());

    // Created elsewhere: known here at once (the empty set was cached).
    let mut c = full_client("SPA", T0);
    c.secret_digest = None;
    c.grant_types = vec![GrantType::AuthorizationCode, GrantType::RefreshToken];
    c.redirect_uris = vec![
        format!("{spa}/cb"),
        format!("{spa}/other"),
        "com.example.app://cb".into(),
    ];
    other
        .create_client(&c, &client_ev(AuditKind::ClientCreated, &c.id))
        .await
        .unwrap();
    assert!(s.is_public_client_origin(spa).await.unwrap());
    // Only the exact serialized origin; a private-use scheme has none.
    for not in [
        "https://spa.example.com/",
        "http://spa.example.com",
        "https://spa.example.com:8443",
        "null",
        "",
    ] {
        assert!(!s.is_public_client_origin(not).await.unwrap(), "{not:?}");
    }

    // A confidential client's redirect URIs are no browser's origin.
    let web = new_client(s, "Web", T0).await;
    assert!(!s.is_public_client_origin("https://rp.example.com").await.unwrap());

    // Changed elsewhere: the old origin goes, the new one comes.
    c.redirect_uris = vec!["https://spa2.example.com:8443/cb".into()];
    assert!(
        other
            .update_client(&c, &client_ev(AuditKind::ClientUpdated, &c.id))
            .await
            .unwrap()
    );
    assert!(!s.is_public_client_origin(spa).await.unwrap());
    assert!(
        s.is_public_client_origin("https://spa2.example.com:8443")
            .await
            .unwrap()
    );

    // Made confidential here, then public again elsewhere, then deleted.
    c.secret_digest = Some(TokenDigest::of("a secret now"));
    assert!(
        s.update_client(&c, &client_ev(AuditKind::ClientUpdated, &c.id))
            .await
            .unwrap()
    );
    assert!(
        !s.is_public_client_origin("https://spa2.example.com:8443")
            .await
            .unwrap()
    );
    c.secret_digest = None;
    assert!(
        other
            .update_client(&c, &client_ev(AuditKind::ClientUpdated, &c.id))
            .await
            .unwrap()
    );
    assert!(
        s.is_public_client_origin("https://spa2.example.com:8443")
            .await
            .unwrap()
    );
    assert!(
        other
            .delete_client(&c.id, &client_ev(AuditKind::ClientDeleted, &c.id))
            .await
            .unwrap()
    );
    assert!(
        !s.is_public_client_origin("https://spa2.example.com:8443")
            .await
            .unwrap()
    );

    // Created here: in force at once here and elsewhere.
    assert!(!other.is_public_client_origin("http://127.0.0.1:5173").await.unwrap());
    let mut local = full_client("Local SPA", T0);
    local.secret_digest = None;
    local.grant_types = vec![GrantType::AuthorizationCode];
    local.redirect_uris = vec!["http://127.0.0.1:5173/callback".into()];
    s.create_client(&local, &client_ev(AuditKind::ClientCreated, &local.id))
        .await
        .unwrap();
    assert!(s.is_public_client_origin("http://127.0.0.1:5173").await.unwrap());
    assert!(other.is_public_client_origin("http://127.0.0.1:5173").await.unwrap());
    // A conflicting id changes nothing.
    let mut clash = local.clone();
    clash.redirect_uris = vec!["https://clash.example.com/cb".into()];
    assert!(matches!(
        s.create_client(&clash, &client_ev(AuditKind::ClientCreated, &clash.id))
            .await,
        Err(StoreError::Conflict("client"))
    ));
    assert!(!s.is_public_client_origin("https://clash.example.com").await.unwrap());
    assert!(s.client(&web.id).await.unwrap().is_some());
}

async fn joined_reads_bring_account_and_bans(db: Arc<TestDb>) {
    let s = db.store.as_ref();
    let a = new_account(s, "joined@example.com").await;
    let client = new_client(s, "Joined", T0).await;
    let session = new_session(s, &a.id, T0).await;
    let code = auth_code(&client, &a.id, &session, T0);
    s.insert_auth_code(&code).await.unwrap();

    let (found, holder) = s.session_with_account(&session.id_digest).await.unwrap().unwrap();
    assert_eq!(found, session);
    assert_eq!(holder.account, a);
    assert!(holder.bans.is_empty());
    let (found, holder) = s.auth_code_with_account(&code.digest).await.unwrap().unwrap();
    assert_eq!(found, code);
    assert_eq!(holder.unwrap().account, a);

    let ban = |client_id: Option<&ClientId>| Ban {
        account_id: a.id.clone(),
        client_id: client_id.cloned(),
        until: Some(T0.plus(3600)),
        reason: "test".to_owned(),
        by: "cli".to_owned(),
        created_at: T0,
    };
    let at_client = ban(Some(&client.id));
    s.ban(&at_client, T0, &ev(AuditKind::AccountBanned, Some(&a.id), T0), &[])
        .await
        .unwrap();
    let (_, holder) = s.session_with_account(&session.id_digest).await.unwrap().unwrap();
    assert_eq!(holder.bans, vec![at_client.clone()]);
    let (_, holder) = s.auth_code_with_account(&code.digest).await.unwrap().unwrap();
    assert_eq!(holder.unwrap().bans, vec![at_client.clone()]);
    // A ban everywhere ends the session: the session is gone, the code stays.
    let everywhere = ban(None);
    s.ban(&everywhere, T0, &ev(AuditKind::AccountBanned, Some(&a.id), T0), &[])
        .await
        .unwrap();
    assert!(s.session_with_account(&session.id_digest).await.unwrap().is_none());
    let (_, holder) = s.auth_code_with_account(&code.digest).await.unwrap().unwrap();
    assert_eq!(holder.unwrap().bans, vec![everywhere, at_client]);
    assert!(
        s.session_with_account(&TokenDigest::of("nothing"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.auth_code_with_account(&TokenDigest::of("nothing"))
            .await
            .unwrap()
            .is_none()
    );
}

/// Codes written at the same time (on SQLite, in one batch transaction):
/// those whose session does not exist are refused and not stored; every
/// other one is stored, whatever it shared a transaction with.
async fn concurrent_codes_fail_alone(db: Arc<TestDb>) {
    let s = Arc::clone(&db.store);
    let a = new_account(s.as_ref(), "many@example.com").await;
    let client = new_client(s.as_ref(), "Many", T0).await;
    let session = new_session(s.as_ref(), &a.id, T0).await;
    let ghost = Session {
        id_digest: TokenDigest::of("no such session"),
        ..session.clone()
    };
    let mut tasks = Vec::new();
    for i in 0..40 {
        let code = auth_code(&client, &a.id, if i % 3 == 0 { &ghost } else { &session }, T0);
        let store = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            let written = store.insert_auth_code(&code).await.is_ok();
            (i, code, written)
        }));
    }
    for task in tasks {
        let (i, code, written) = task.await.unwrap();
        assert_eq!(written, i % 3 != 0, "code {i}");
        let stored = auth_code_of(s.as_ref(), &code.digest).await.unwrap();
        assert_eq!(stored.is_some(), written, "code {i}");
    }
}
