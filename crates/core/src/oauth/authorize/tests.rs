//! Table tests of the authorization request's checks and of `decide`.

use super::*;
use crate::oauth::client::Client;

fn client(public: bool, first_party: bool) -> Client {
    let (mut c, _) = Client::new(
        "Shop",
        public,
        vec!["https://shop.example/cb".into()],
        vec![],
        Timestamp(0),
    )
    .expect("valid client");
    c.first_party = first_party;
    c
}

fn params(extra: &[(&str, &str)]) -> AuthorizeParams {
    let mut pairs: Vec<(String, String)> = vec![
        ("client_id".into(), "ignored".into()),
        ("redirect_uri".into(), "https://shop.example/cb".into()),
        ("response_type".into(), "code".into()),
        ("scope".into(), "openid email".into()),
        ("state".into(), "s".into()),
        ("code_challenge".into(), crate::oauth::pkce::s256(&"v".repeat(43))),
        ("code_challenge_method".into(), "S256".into()),
    ];
    for (k, v) in extra {
        pairs.retain(|(key, _)| key != k);
        pairs.push((k.to_string(), v.to_string()));
    }
    AuthorizeParams::from_pairs(pairs)
}

fn error_of(r: Result<AuthorizationRequest, Rejection>) -> (bool, ErrorCode) {
    match r {
        Ok(_) => panic!("expected a rejection"),
        Err(Rejection::Page(e)) => (false, e.code),
        Err(Rejection::Redirect { error, .. }) => (true, error.code),
    }
}

#[test]
fn a_good_request_passes() {
    let req = validate(&params(&[]), Some(client(false, true))).expect("valid");
    assert_eq!(req.scopes.to_string(), "email openid");
    assert_eq!(req.state.as_deref(), Some("s"));
}

#[test]
fn scopes_the_client_may_not_have_are_left_out() {
    // OpenID Connect Core 3.1.2.1: unknown scopes are ignored; RFC 6749
    // 3.3: so are known ones the client is not registered for.
    let req = validate(
        &params(&[("scope", "openid address phone gatehouse:admin email")]),
        Some(client(false, true)),
    )
    .expect("valid");
    assert_eq!(req.scopes.to_string(), "email openid");
}

#[test]
fn untrusted_client_or_redirect_never_redirects() {
    assert_eq!(
        error_of(validate(&params(&[]), None)),
        (false, ErrorCode::InvalidClient)
    );
    let wrong = params(&[("redirect_uri", "https://evil.example/cb")]);
    assert_eq!(
        error_of(validate(&wrong, Some(client(false, true)))),
        (false, ErrorCode::InvalidRequest)
    );
    let mut dup = params(&[]);
    dup.malformed = Some("redirect_uri".into());
    assert_eq!(
        error_of(validate(&dup, Some(client(false, true)))),
        (false, ErrorCode::InvalidRequest)
    );
}

#[test]
fn each_check_names_its_error() {
    let c = || Some(client(false, true));
    let cases: &[(&[(&str, &str)], ErrorCode)] = &[
        (&[("response_type", "token")], ErrorCode::UnsupportedResponseType),
        (&[("response_mode", "form_post")], ErrorCode::InvalidRequest),
        (&[("request", "x")], ErrorCode::RequestNotSupported),
        (&[("request_uri", "x")], ErrorCode::RequestUriNotSupported),
        (&[("scope", "admin")], ErrorCode::InvalidScope),
        (&[("scope", "openid \"x\"")], ErrorCode::InvalidScope),
        (&[("code_challenge_method", "plain")], ErrorCode::InvalidRequest),
        (&[("prompt", "none consent")], ErrorCode::InvalidRequest),
        (&[("prompt", "none select_account")], ErrorCode::InvalidRequest),
        (&[("prompt", "select_account none")], ErrorCode::InvalidRequest),
        (&[("max_age", "soon")], ErrorCode::InvalidRequest),
        (&[("max_age", "+5")], ErrorCode::InvalidRequest),
        (&[("resource", "relative/path")], ErrorCode::InvalidTarget),
        (&[("dpop_jkt", "")], ErrorCode::InvalidRequest),
        (&[("dpop_jkt", "not-a-thumbprint")], ErrorCode::InvalidRequest),
        // 43 characters, but not base64url.
        (&[("dpop_jkt", &"*".repeat(43))], ErrorCode::InvalidRequest),
        // base64url of 33 bytes.
        (&[("dpop_jkt", &"A".repeat(44))], ErrorCode::InvalidRequest),
        // Padded.
        (
            &[("dpop_jkt", &format!("{}=", "A".repeat(42)))],
            ErrorCode::InvalidRequest,
        ),
    ];
    for (extra, code) in cases {
        assert_eq!(error_of(validate(&params(extra), c())), (true, *code), "{extra:?}");
    }
    // A public client must send PKCE.
    let mut p = params(&[]);
    p.code_challenge = None;
    p.code_challenge_method = None;
    assert_eq!(
        error_of(validate(&p, Some(client(true, true)))),
        (true, ErrorCode::InvalidRequest)
    );
    assert!(validate(&p, Some(client(false, true))).is_ok());
}

#[test]
fn dpop_jkt_is_kept_for_the_code() {
    let jkt = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";
    let req = validate(&params(&[("dpop_jkt", jkt)]), Some(client(true, true))).expect("valid");
    assert_eq!(req.dpop_jkt.as_deref(), Some(jkt));
    assert_eq!(
        validate(&params(&[]), Some(client(true, true)))
            .expect("valid")
            .dpop_jkt,
        None
    );
    let mut twice = params(&[("dpop_jkt", jkt)]);
    twice.malformed = Some("dpop_jkt".into());
    assert_eq!(
        error_of(validate(&twice, Some(client(true, true)))),
        (true, ErrorCode::InvalidRequest)
    );
}

#[test]
fn repeated_parameters_are_refused_but_resource_may_repeat() {
    let p = AuthorizeParams::from_pairs(vec![
        ("state".to_owned(), "a".to_owned()),
        ("state".to_owned(), "b".to_owned()),
        ("resource".to_owned(), "https://a.example".to_owned()),
        ("resource".to_owned(), "https://b.example".to_owned()),
    ]);
    assert_eq!(p.malformed.as_deref(), Some("state"));
    assert_eq!(p.resources.len(), 2);
}

fn request(first_party: bool, extra: &[(&str, &str)]) -> AuthorizationRequest {
    validate(&params(extra), Some(client(false, first_party))).expect("valid")
}

fn session(auth_time: i64) -> Option<SessionView> {
    Some(SessionView {
        active: true,
        auth_time: Timestamp(auth_time),
        ready: true,
        chosen: false,
    })
}

#[test]
fn decisions() {
    let now = Timestamp(10_000);
    let fp = request(true, &[]);
    assert_eq!(decide(&fp, None, None, None, now), Next::Login { create: false });
    assert_eq!(decide(&fp, session(9_000), None, None, now), Next::Issue);
    let none = request(true, &[("prompt", "none")]);
    assert!(matches!(decide(&none, None, None, None, now), Next::Fail(e) if e.code == ErrorCode::LoginRequired));
    let reauth = Some(SessionView {
        active: false,
        auth_time: Timestamp(9_000),
        ready: true,
        chosen: false,
    });
    assert!(matches!(decide(&none, reauth, None, None, now), Next::Fail(e) if e.code == ErrorCode::LoginRequired));
    let create = request(true, &[("prompt", "create")]);
    assert_eq!(decide(&create, None, None, None, now), Next::Login { create: true });
    let unverified = Some(SessionView {
        active: true,
        auth_time: Timestamp(9_000),
        ready: false,
        chosen: false,
    });
    assert_eq!(decide(&fp, unverified, None, None, now), Next::Verify);
}

#[test]
fn select_account_asks_until_the_person_chooses() {
    let now = Timestamp(10_000);
    let req = request(true, &[("prompt", "select_account")]);
    assert!(req.prompt.select_account && !req.prompt.login);
    // Nobody signed in: the login form is the choice.
    assert_eq!(decide(&req, None, None, None, now), Next::Login { create: false });
    // Signed in: ask, also when resumed without a choice.
    assert_eq!(decide(&req, session(9_000), None, None, now), Next::SelectAccount);
    assert_eq!(
        decide(&req, session(9_000), None, Some(Timestamp(9_500)), now),
        Next::SelectAccount
    );
    // A session that must enter its password again is offered too.
    let stale = Some(SessionView {
        active: false,
        auth_time: Timestamp(9_000),
        ready: true,
        chosen: false,
    });
    assert_eq!(decide(&req, stale, None, None, now), Next::SelectAccount);
    // "Continue as": issue, without a new login.
    let chosen = Some(SessionView {
        active: true,
        auth_time: Timestamp(9_000),
        ready: true,
        chosen: true,
    });
    assert_eq!(decide(&req, chosen, None, Some(Timestamp(9_500)), now), Next::Issue);
    // Chosen, but the session must enter its password: log in.
    let chosen_stale = chosen.map(|s| SessionView { active: false, ..s });
    assert_eq!(
        decide(&req, chosen_stale, None, Some(Timestamp(9_500)), now),
        Next::Login { create: false }
    );
    // "Use another account": whoever signed in after the request began.
    assert_eq!(
        decide(&req, session(9_600), None, Some(Timestamp(9_500)), now),
        Next::Issue
    );
    // With login too: choose first, then the login it asks for.
    let both = request(true, &[("prompt", "select_account login")]);
    assert_eq!(decide(&both, session(9_000), None, None, now), Next::SelectAccount);
    assert_eq!(
        decide(&both, chosen, None, Some(Timestamp(9_500)), now),
        Next::Login { create: false }
    );
}

#[test]
fn fresh_login_satisfies_prompt_login_and_max_age() {
    let now = Timestamp(10_000);
    for extra in [[("prompt", "login")], [("max_age", "0")], [("max_age", "60")]] {
        let req = request(true, &extra);
        assert_eq!(
            decide(&req, session(9_000), None, None, now),
            Next::Login { create: false },
            "{extra:?}"
        );
        // Waiting since 9_500, signed in again at 9_600: done.
        assert_eq!(
            decide(&req, session(9_600), None, Some(Timestamp(9_500)), now),
            Next::Issue,
            "{extra:?}"
        );
    }
    let recent = request(true, &[("max_age", "3600")]);
    assert_eq!(decide(&recent, session(9_000), None, None, now), Next::Issue);
}

/// The endpoint skips reading the consent when `consent_matters` says
/// so: then no consent, and every kind of consent, decide the same.
#[test]
fn consent_that_does_not_matter_changes_nothing() {
    let now = Timestamp(10_000);
    let consents = [
        None,
        Some(ConsentView {
            covers: true,
            granted_at: Timestamp(1),
        }),
        Some(ConsentView {
            covers: false,
            granted_at: Timestamp(9_700),
        }),
        Some(ConsentView {
            covers: true,
            granted_at: Timestamp(9_700),
        }),
    ];
    let extras: [&[(&str, &str)]; 5] = [
        &[],
        &[("prompt", "none")],
        &[("prompt", "login")],
        &[("prompt", "consent")],
        &[("max_age", "0")],
    ];
    for first_party in [true, false] {
        for extra in extras {
            let req = request(first_party, extra);
            if consent_matters(&req) {
                continue;
            }
            for fresh in [None, Some(Timestamp(9_500))] {
                let without = decide(&req, session(9_600), None, fresh, now);
                for c in consents {
                    assert_eq!(decide(&req, session(9_600), c, fresh, now), without, "{extra:?}");
                }
            }
        }
    }
    assert!(!consent_matters(&request(true, &[])));
    assert!(consent_matters(&request(true, &[("prompt", "consent")])));
    assert!(consent_matters(&request(false, &[])));
}

#[test]
fn consent_for_third_parties() {
    let now = Timestamp(10_000);
    let tp = request(false, &[]);
    assert_eq!(decide(&tp, session(9_000), None, None, now), Next::Consent);
    let given = Some(ConsentView {
        covers: true,
        granted_at: Timestamp(1),
    });
    assert_eq!(decide(&tp, session(9_000), given, None, now), Next::Issue);
    let partial = Some(ConsentView {
        covers: false,
        granted_at: Timestamp(1),
    });
    assert_eq!(decide(&tp, session(9_000), partial, None, now), Next::Consent);
    let none = request(false, &[("prompt", "none")]);
    assert!(
        matches!(decide(&none, session(9_000), None, None, now), Next::Fail(e) if e.code == ErrorCode::ConsentRequired)
    );
    // prompt=consent asks even with a remembered consent, until it is given again.
    let again = request(false, &[("prompt", "consent")]);
    assert_eq!(
        decide(&again, session(9_000), given, Some(Timestamp(9_500)), now),
        Next::Consent
    );
    let fresh = Some(ConsentView {
        covers: true,
        granted_at: Timestamp(9_700),
    });
    assert_eq!(
        decide(&again, session(9_000), fresh, Some(Timestamp(9_500)), now),
        Next::Issue
    );
}
