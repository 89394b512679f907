//! Table tests of refreshing: every refusal, in order, and what a good
//! refresh issues.

use super::*;
use crate::oauth::client::ClientId;
use crate::oauth::fixtures::{account, ban};
use crate::{AccountId, TokenDigest};

const NOW: Timestamp = Timestamp(10_000);

fn client() -> Client {
    Client::new(
        "Shop",
        false,
        vec!["https://shop.example/cb".into()],
        vec![],
        Timestamp(0),
    )
    .expect("client")
    .0
}

fn grant(client: &Client) -> Grant {
    Grant {
        id: "g_1".into(),
        client_id: client.id.clone(),
        account_id: Some(AccountId("user-1".into())),
        scopes: Scopes::parse("openid profile offline_access").expect("scopes"),
        sid: Some("sid-1".into()),
        session_digest: None,
        auth_time: Some(Timestamp(9_000)),
        amr: vec![],
        resources: vec![],
        parent_id: None,
        dpop_jkt: None,
        created_at: Timestamp(9_000),
        revoked_at: None,
    }
}

fn token() -> RefreshToken {
    RefreshToken {
        digest: TokenDigest("d".into()),
        grant_id: "g_1".into(),
        created_at: Timestamp(9_000),
        expires_at: Timestamp(20_000),
        used_at: None,
    }
}

/// One change to a good case.
type Change = fn(&mut Case);

/// A request and what was read for it; each case changes one thing.
struct Case {
    client: Client,
    token: RefreshToken,
    grant: Grant,
    grant_revoked: bool,
    scope: Option<String>,
    proof_jkt: Option<String>,
    account: Option<Account>,
    bans: Vec<Ban>,
}

impl Case {
    fn good() -> Case {
        let client = client();
        Case {
            grant: grant(&client),
            client,
            token: token(),
            grant_revoked: false,
            scope: None,
            proof_jkt: None,
            account: Some(account(true)),
            bans: vec![],
        }
    }

    fn run(&self) -> Result<Refreshed<'_>, Refusal> {
        refresh(&Refresh {
            client: &self.client,
            token: &self.token,
            grant: &self.grant,
            grant_revoked: self.grant_revoked,
            scope: self.scope.as_deref(),
            proof_jkt: self.proof_jkt.as_deref(),
            holder: self.account.as_ref().map(|a| (a, self.bans.as_slice())),
            now: NOW,
        })
    }
}

/// `(what, change, error code, description, private cause, revokes the
/// family)`.
type Row = (
    &'static str,
    fn(&mut Case),
    ErrorCode,
    &'static str,
    Option<&'static str>,
    bool,
);

const INVALID: &str = "the refresh token is invalid, expired or revoked";
const BOUND: &str = "the refresh token is bound to a DPoP key: send a DPoP proof made with it";

const REFUSALS: &[Row] = &[
    (
        "another client's token",
        |c| c.client = client(),
        ErrorCode::InvalidGrant,
        INVALID,
        Some("token of another client"),
        false,
    ),
    (
        "a bound family, without a proof",
        |c| c.grant.dpop_jkt = Some("key-1".into()),
        ErrorCode::InvalidGrant,
        BOUND,
        None,
        false,
    ),
    (
        "a bound family, with a proof by another key",
        |c| {
            c.grant.dpop_jkt = Some("key-1".into());
            c.proof_jkt = Some("key-2".into());
        },
        ErrorCode::InvalidGrant,
        BOUND,
        None,
        false,
    ),
    (
        "a rotated token reused without the key revokes nothing",
        |c| {
            c.grant.dpop_jkt = Some("key-1".into());
            c.token.used_at = Some(Timestamp(9_500));
        },
        ErrorCode::InvalidGrant,
        BOUND,
        None,
        false,
    ),
    (
        "a rotated token reused revokes the family",
        |c| c.token.used_at = Some(Timestamp(9_500)),
        ErrorCode::InvalidGrant,
        INVALID,
        Some("rotated token reused: family revoked"),
        true,
    ),
    (
        "an expired token",
        |c| c.token.expires_at = NOW,
        ErrorCode::InvalidGrant,
        INVALID,
        Some("expired or revoked"),
        false,
    ),
    (
        "a revoked family",
        |c| c.grant_revoked = true,
        ErrorCode::InvalidGrant,
        INVALID,
        Some("expired or revoked"),
        false,
    ),
    (
        "a malformed scope",
        |c| c.scope = Some("openid \"x\"".into()),
        ErrorCode::InvalidScope,
        "malformed scope",
        None,
        false,
    ),
    (
        "a wider scope",
        |c| c.scope = Some("openid payments".into()),
        ErrorCode::InvalidScope,
        "the scope exceeds what was granted",
        None,
        false,
    ),
    (
        "a grant without a user",
        |c| {
            c.grant.account_id = None;
            c.account = None;
        },
        ErrorCode::InvalidGrant,
        INVALID,
        Some("grant without a user"),
        false,
    ),
    (
        "the account is gone",
        |c| c.account = None,
        ErrorCode::InvalidGrant,
        INVALID,
        Some("account gone"),
        false,
    ),
    (
        "the account is not verified",
        |c| c.account = Some(account(false)),
        ErrorCode::InvalidGrant,
        INVALID,
        Some("account gone"),
        false,
    ),
    (
        "banned everywhere",
        |c| c.bans = vec![ban(None, None)],
        ErrorCode::InvalidGrant,
        "the user may not use this client",
        Some("banned"),
        false,
    ),
    (
        "banned from this client",
        |c| c.bans = vec![ban(Some(&c.client.id), None)],
        ErrorCode::InvalidGrant,
        "the user may not use this client",
        Some("banned"),
        false,
    ),
];

#[test]
fn every_refusal() {
    for (what, change, code, description, cause, revokes) in REFUSALS {
        let mut case = Case::good();
        change(&mut case);
        let refusal = case.run().expect_err(what);
        assert_eq!(refusal.error.code, *code, "{what}");
        assert_eq!(refusal.error.description, *description, "{what}");
        assert_eq!(refusal.error.cause.as_deref(), *cause, "{what}");
        assert_eq!(refusal.revokes_family, *revokes, "{what}");
    }
}

#[test]
fn the_client_check_runs_before_the_replay_check() {
    assert_eq!(CHECKS.len(), 7);
    let mut case = Case::good();
    case.client = client();
    case.token.used_at = Some(Timestamp(9_500));
    assert!(!case.run().expect_err("refused").revokes_family);
}

#[test]
fn a_good_refresh_issues_the_grants_scopes_or_fewer() {
    let mut case = Case::good();
    let all = case.run().expect("refreshed");
    assert_eq!(all.scopes, case.grant.scopes);
    assert_eq!(all.account.id.as_str(), "user-1");
    case.scope = Some("openid".into());
    assert_eq!(case.run().expect("refreshed").scopes.to_string(), "openid");
}

#[test]
fn what_does_not_refuse() {
    let quiet: &[(&str, Change)] = &[
        ("a bound family with a proof by its key", |c| {
            c.grant.dpop_jkt = Some("key-1".into());
            c.proof_jkt = Some("key-1".into());
        }),
        ("a proof although the family is not bound", |c| {
            c.proof_jkt = Some("k".into())
        }),
        ("banned from another client", |c| {
            c.bans = vec![ban(Some(&ClientId("other".into())), None)]
        }),
        ("the same scope, asked again", |c| {
            c.scope = Some("offline_access openid profile".into())
        }),
    ];
    for (what, change) in quiet {
        let mut case = Case::good();
        change(&mut case);
        assert!(case.run().is_ok(), "{what}");
    }
}
