//! Table tests of code redemption: every refusal, in order, and what a good
//! code becomes.

use super::*;
use crate::oauth::client::ClientId;
use crate::oauth::error::ErrorCode;
use crate::oauth::fixtures::{account, ban};
use crate::oauth::scope::Scopes;
use crate::{AccountId, TokenDigest};

const NOW: Timestamp = Timestamp(10_000);
const REDIRECT: &str = "https://shop.example/cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn client() -> Client {
    Client::new("Shop", true, vec![REDIRECT.into()], vec![], Timestamp(0))
        .expect("client")
        .0
}

fn code(client: &Client) -> AuthCode {
    AuthCode {
        digest: TokenDigest("d".into()),
        client_id: client.id.clone(),
        account_id: AccountId("user-1".into()),
        session_digest: TokenDigest("s".into()),
        sid: "sid-1".into(),
        redirect_uri: REDIRECT.into(),
        scopes: Scopes::parse("openid profile").expect("scopes"),
        nonce: Some("n".into()),
        code_challenge: Some(pkce::s256(VERIFIER)),
        auth_time: Timestamp(9_000),
        amr: vec![],
        acr_values: None,
        resources: vec![],
        created_at: Timestamp(9_990),
        expires_at: Timestamp(10_050),
        used_at: None,
        grant_id: "g_1".into(),
        dpop_jkt: None,
    }
}

/// One change to a good case.
type Change = fn(&mut Case);

/// A request and what was read for it; each case changes one thing.
struct Case {
    client: Client,
    code: AuthCode,
    redirect_uri: String,
    code_verifier: Option<String>,
    proof_jkt: Option<String>,
    account: Option<Account>,
    bans: Vec<Ban>,
}

impl Case {
    fn good() -> Case {
        let client = client();
        Case {
            code: code(&client),
            client,
            redirect_uri: REDIRECT.into(),
            code_verifier: Some(VERIFIER.into()),
            proof_jkt: None,
            account: Some(account(true)),
            bans: vec![],
        }
    }

    fn run(&self) -> Result<Redeemed<'_>, Refusal> {
        redeem(&Redeem {
            client: &self.client,
            code: &self.code,
            redirect_uri: &self.redirect_uri,
            code_verifier: self.code_verifier.as_deref(),
            proof_jkt: self.proof_jkt.as_deref(),
            holder: self.account.as_ref().map(|a| (a, self.bans.as_slice())),
            now: NOW,
        })
    }
}

/// `(what, change, description, private cause, revokes the family)`.
type Row = (&'static str, fn(&mut Case), &'static str, Option<&'static str>, bool);

const INVALID: &str = "the code is invalid, expired or already used";

const REFUSALS: &[Row] = &[
    (
        "another client's code",
        |c| c.client = client(),
        INVALID,
        Some("code of another client"),
        false,
    ),
    (
        "a code bound by dpop_jkt, without a proof",
        |c| c.code.dpop_jkt = Some("key-1".into()),
        "the code is bound to a DPoP key (dpop_jkt): send a DPoP proof made with it",
        None,
        false,
    ),
    (
        "a code bound by dpop_jkt, with a proof by another key",
        |c| {
            c.code.dpop_jkt = Some("key-1".into());
            c.proof_jkt = Some("key-2".into());
        },
        "the code is bound to a DPoP key (dpop_jkt): send a DPoP proof made with it",
        None,
        false,
    ),
    (
        "a bound code replayed without the key revokes nothing",
        |c| {
            c.code.dpop_jkt = Some("key-1".into());
            c.code.used_at = Some(Timestamp(9_995));
        },
        "the code is bound to a DPoP key (dpop_jkt): send a DPoP proof made with it",
        None,
        false,
    ),
    (
        "a replayed code revokes its family",
        |c| c.code.used_at = Some(Timestamp(9_995)),
        INVALID,
        Some("code replayed"),
        true,
    ),
    (
        "a replayed and expired code still revokes its family",
        |c| {
            c.code.used_at = Some(Timestamp(9_995));
            c.code.expires_at = NOW;
        },
        INVALID,
        Some("code replayed"),
        true,
    ),
    (
        "an expired code",
        |c| c.code.expires_at = NOW,
        INVALID,
        Some("code expired"),
        false,
    ),
    (
        "another redirect_uri",
        |c| c.redirect_uri = "https://shop.example/cb/".into(),
        "redirect_uri does not match the authorization request",
        None,
        false,
    ),
    (
        "PKCE: the wrong verifier",
        |c| c.code_verifier = Some("x".repeat(43)),
        "code_verifier does not match the code_challenge",
        None,
        false,
    ),
    (
        "PKCE: no verifier",
        |c| c.code_verifier = None,
        "code_verifier is required",
        None,
        false,
    ),
    (
        "PKCE: a verifier without a challenge (downgrade)",
        |c| c.code.code_challenge = None,
        "code_verifier sent but no code_challenge was",
        None,
        false,
    ),
    (
        "the account is gone",
        |c| c.account = None,
        INVALID,
        Some("account gone"),
        false,
    ),
    (
        "the account is not verified",
        |c| c.account = Some(account(false)),
        INVALID,
        Some("account gone"),
        false,
    ),
    (
        "banned everywhere",
        |c| c.bans = vec![ban(None, None)],
        "the user may not use this client",
        Some("banned"),
        false,
    ),
    (
        "banned from this client",
        |c| c.bans = vec![ban(Some(&c.client.id), None)],
        "the user may not use this client",
        Some("banned"),
        false,
    ),
];

#[test]
fn every_refusal() {
    for (what, change, description, cause, revokes) in REFUSALS {
        let mut case = Case::good();
        change(&mut case);
        let refusal = case.run().expect_err(what);
        assert_eq!(refusal.error.code, ErrorCode::InvalidGrant, "{what}");
        assert_eq!(refusal.error.description, *description, "{what}");
        assert_eq!(refusal.error.cause.as_deref(), *cause, "{what}");
        assert_eq!(refusal.revokes_family, *revokes, "{what}");
    }
}

#[test]
fn each_check_refuses_alone_in_the_table_order() {
    let names: Vec<&str> = CHECKS.iter().map(|c| c.name).collect();
    assert_eq!(names.len(), 8, "{names:?}");
    // The client check runs first: another client's replayed code is
    // refused without revoking the family it does not own.
    let mut case = Case::good();
    case.client = client();
    case.code.used_at = Some(Timestamp(9_995));
    assert!(!case.run().expect_err("refused").revokes_family);
}

#[test]
fn a_good_code_becomes_its_grant() {
    let case = Case::good();
    let redeemed = case.run().expect("redeemed");
    assert_eq!(redeemed.grant, Grant::from_code(&case.code, NOW));
    assert_eq!(redeemed.account.id.as_str(), "user-1");
}

#[test]
fn the_grant_is_bound_to_the_proof_that_redeems_it() {
    let mut case = Case::good();
    case.proof_jkt = Some("key-1".into());
    assert_eq!(case.run().expect("redeemed").grant.dpop_jkt.as_deref(), Some("key-1"));
    case.code.dpop_jkt = Some("key-1".into());
    assert_eq!(case.run().expect("redeemed").grant.dpop_jkt.as_deref(), Some("key-1"));
}

#[test]
fn what_does_not_refuse() {
    let quiet: &[(&str, Change)] = &[
        ("no PKCE at all", |c| {
            c.code.code_challenge = None;
            c.code_verifier = None;
        }),
        ("banned from another client", |c| {
            c.bans = vec![ban(Some(&ClientId("other".into())), None)]
        }),
        ("a suspension that has lifted", |c| {
            c.bans = vec![ban(None, Some(NOW.0))]
        }),
        ("a proof although the code is not bound", |c| {
            c.proof_jkt = Some("k".into())
        }),
    ];
    for (what, change) in quiet {
        let mut case = Case::good();
        change(&mut case);
        assert!(case.run().is_ok(), "{what}");
    }
}
