//! The authorization request (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2)
//! and its checks, in the order they run.
//!
//! The first two checks decide whether the client and its redirect URI can be
//! trusted: when they fail, the person sees an error page and nobody is
//! redirected. Every later failure goes back to the client's redirect URI
//! with the error code. [`CHECKS`] is that later list; a test can run any
//! one of them alone.

use std::collections::BTreeSet;

use super::client::{Client, GrantType};
use super::error::{ErrorCode, OAuthError};
use super::pkce;
use super::scope::{self, Scopes};
use crate::Timestamp;

/// No parameter value may be longer than this.
pub const MAX_PARAM_LEN: usize = 2048;
/// `state` and `nonce` are echoed back; keep them reasonable.
pub const MAX_STATE_LEN: usize = 1024;

/// The raw parameters, each at most once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthorizeParams {
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub response_type: Option<String>,
    pub response_mode: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
    pub login_hint: Option<String>,
    pub acr_values: Option<String>,
    pub request: Option<String>,
    pub request_uri: Option<String>,
    pub registration: Option<String>,
    pub resources: Vec<String>,
    /// RFC 9449 §10: the thumbprint of the DPoP key the code is bound to.
    pub dpop_jkt: Option<String>,
    /// The first parameter that appeared twice, or was too long.
    pub malformed: Option<String>,
}

impl AuthorizeParams {
    /// From decoded query pairs. A repeated parameter (other than
    /// `resource`, which RFC 8707 allows to repeat) or an oversized one is
    /// remembered and refused by the checks.
    pub fn from_pairs<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        let mut p = AuthorizeParams::default();
        let mut seen = BTreeSet::new();
        for (key, value) in pairs {
            if value.len() > MAX_PARAM_LEN || (key != "resource" && !seen.insert(key.clone())) {
                p.malformed.get_or_insert(key.clone());
                continue;
            }
            let slot = match key.as_str() {
                "client_id" => &mut p.client_id,
                "redirect_uri" => &mut p.redirect_uri,
                "response_type" => &mut p.response_type,
                "response_mode" => &mut p.response_mode,
                "scope" => &mut p.scope,
                "state" => &mut p.state,
                "nonce" => &mut p.nonce,
                "code_challenge" => &mut p.code_challenge,
                "code_challenge_method" => &mut p.code_challenge_method,
                "prompt" => &mut p.prompt,
                "max_age" => &mut p.max_age,
                "login_hint" => &mut p.login_hint,
                "acr_values" => &mut p.acr_values,
                "request" => &mut p.request,
                "request_uri" => &mut p.request_uri,
                "registration" => &mut p.registration,
                "dpop_jkt" => &mut p.dpop_jkt,
                "resource" => {
                    p.resources.push(value);
                    continue;
                }
                // Unknown parameters are ignored (RFC 6749 §3.1).
                _ => continue,
            };
            *slot = Some(value);
        }
        p
    }
}

/// What `prompt` asks for (OpenID Connect Core §3.1.2.1, Initiating User
/// Registration 1.0 for `create`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
    pub create: bool,
    /// Ask which account to continue with (the browser's signed-in one, or
    /// another after a login).
    pub select_account: bool,
}

impl Prompt {
    pub fn parse(value: Option<&str>) -> Result<Prompt, OAuthError> {
        let mut p = Prompt::default();
        for v in value.unwrap_or_default().split(' ').filter(|v| !v.is_empty()) {
            match v {
                "none" => p.none = true,
                "login" => p.login = true,
                "select_account" => p.select_account = true,
                "consent" => p.consent = true,
                "create" => p.create = true,
                other => {
                    return Err(OAuthError::invalid_request(format!(
                        "unsupported prompt value {other:?}"
                    )));
                }
            }
        }
        if p.none && (p.login || p.consent || p.create || p.select_account) {
            return Err(OAuthError::invalid_request(
                "prompt=none cannot be combined with other values",
            ));
        }
        Ok(p)
    }
}

/// A request that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizationRequest {
    pub client: Client,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub scopes: Scopes,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub acr_values: Option<String>,
    pub resources: Vec<String>,
    /// The DPoP key (thumbprint) the code is bound to (RFC 9449 §10): its
    /// redemption needs a proof by that key, which binds the tokens.
    pub dpop_jkt: Option<String>,
}

/// Where an error goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The client or redirect URI cannot be trusted: show an error page.
    Page(OAuthError),
    /// Redirect back to the client with the error.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: OAuthError,
    },
}

/// Checks 1 and 2: the client is known, and the redirect URI is one of its
/// registered URIs, compared exactly.
pub fn trusted_redirect(params: &AuthorizeParams, client: Option<Client>) -> Result<(Client, String), OAuthError> {
    if matches!(params.malformed.as_deref(), Some("client_id" | "redirect_uri")) {
        return Err(OAuthError::invalid_request(
            "client_id and redirect_uri must appear once",
        ));
    }
    let Some(client) = client else {
        return Err(OAuthError::new(ErrorCode::InvalidClient, "unknown client"));
    };
    let Some(redirect_uri) = params.redirect_uri.clone() else {
        return Err(OAuthError::invalid_request("redirect_uri is required"));
    };
    if !client.has_redirect_uri(&redirect_uri) {
        return Err(OAuthError::invalid_request(
            "redirect_uri is not registered for this client",
        ));
    }
    Ok((client, redirect_uri))
}

type CheckFn = fn(&AuthorizeParams, &Client) -> Result<(), OAuthError>;

/// One named check.
pub struct Check {
    pub name: &'static str,
    pub run: CheckFn,
}

/// The checks after the redirect URI is trusted, in order.
pub const CHECKS: &[Check] = &[
    Check {
        name: "each parameter once, none oversized",
        run: check_well_formed,
    },
    Check {
        name: "response_type is code",
        run: check_response_type,
    },
    Check {
        name: "response_mode is query",
        run: check_response_mode,
    },
    Check {
        name: "no request objects or registration",
        run: check_no_request_objects,
    },
    Check {
        name: "the client may use the code grant",
        run: check_grant_allowed,
    },
    Check {
        name: "the scope is well-formed and some of it is allowed for the client",
        run: check_scopes,
    },
    Check {
        name: "PKCE with S256; required for public clients",
        run: check_pkce,
    },
    Check {
        name: "prompt is understood",
        run: check_prompt,
    },
    Check {
        name: "max_age is a non-negative integer",
        run: check_max_age,
    },
    Check {
        name: "state and nonce are not oversized",
        run: check_state_nonce,
    },
    Check {
        name: "resource indicators are absolute URIs",
        run: check_resources,
    },
    Check {
        name: "dpop_jkt is a JWK SHA-256 thumbprint",
        run: check_dpop_jkt,
    },
];

fn check_well_formed(p: &AuthorizeParams, _: &Client) -> Result<(), OAuthError> {
    match &p.malformed {
        Some(name) => Err(OAuthError::invalid_request(format!(
            "parameter {name} is repeated or too long"
        ))),
        None => Ok(()),
    }
}

fn check_response_type(p: &AuthorizeParams, _: &Client) -> Result<(), OAuthError> {
    match p.response_type.as_deref() {
        Some("code") => Ok(()),
        None => Err(OAuthError::invalid_request("response_type is required")),
        Some(_) => Err(OAuthError::new(
            ErrorCode::UnsupportedResponseType,
            "only response_type=code is supported",
        )),
    }
}

fn check_response_mode(p: &AuthorizeParams, _: &Client) -> Result<(), OAuthError> {
    match p.response_mode.as_deref() {
        None | Some("query") => Ok(()),
        Some(_) => Err(OAuthError::invalid_request("only response_mode=query is supported")),
    }
}

fn check_no_request_objects(p: &AuthorizeParams, _: &Client) -> Result<(), OAuthError> {
    if p.request.is_some() {
        Err(OAuthError::new(
            ErrorCode::RequestNotSupported,
            "request objects are not supported",
        ))
    } else if p.request_uri.is_some() {
        Err(OAuthError::new(
            ErrorCode::RequestUriNotSupported,
            "request_uri is not supported",
        ))
    } else if p.registration.is_some() {
        Err(OAuthError::new(
            ErrorCode::RegistrationNotSupported,
            "registration is not supported",
        ))
    } else {
        Ok(())
    }
}

fn check_grant_allowed(_: &AuthorizeParams, c: &Client) -> Result<(), OAuthError> {
    if c.allows(GrantType::AuthorizationCode) {
        Ok(())
    } else {
        Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the client may not use the authorization code grant",
        ))
    }
}

/// The scopes to grant: those requested that the client is registered for;
/// the others are left out (see `scope`'s module documentation).
fn granted_scopes(p: &AuthorizeParams, c: &Client) -> Result<Scopes, OAuthError> {
    let requested = Scopes::parse(p.scope.as_deref().unwrap_or_default())
        .map_err(|_| OAuthError::new(ErrorCode::InvalidScope, "malformed scope"))?;
    scope::grant(&requested, &c.scopes).map_err(|_| {
        OAuthError::new(
            ErrorCode::InvalidScope,
            "none of the requested scopes is allowed for this client",
        )
    })
}

fn check_scopes(p: &AuthorizeParams, c: &Client) -> Result<(), OAuthError> {
    granted_scopes(p, c).map(|_| ())
}

fn check_pkce(p: &AuthorizeParams, c: &Client) -> Result<(), OAuthError> {
    match (p.code_challenge.as_deref(), p.code_challenge_method.as_deref()) {
        (None, None) if c.is_public() => Err(OAuthError::invalid_request("PKCE (code_challenge, S256) is required")),
        (None, None) => Ok(()),
        (None, Some(_)) => Err(OAuthError::invalid_request(
            "code_challenge_method without code_challenge",
        )),
        (Some(_), None) => Err(OAuthError::invalid_request("code_challenge_method=S256 is required")),
        (Some(_), Some(m)) if m != "S256" => Err(OAuthError::invalid_request(
            "only code_challenge_method=S256 is supported",
        )),
        (Some(ch), Some(_)) if !pkce::valid_challenge(ch) => {
            Err(OAuthError::invalid_request("malformed code_challenge"))
        }
        _ => Ok(()),
    }
}

fn check_prompt(p: &AuthorizeParams, _: &Client) -> Result<(), OAuthError> {
    Prompt::parse(p.prompt.as_deref()).map(|_| ())
}

fn parse_max_age(p: &AuthorizeParams) -> Result<Option<i64>, OAuthError> {
    match p.max_age.as_deref() {
        None => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 && v.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(n)),
            _ => Err(OAuthError::invalid_request("max_age must be a non-negative integer")),
        },
    }
}

fn check_max_age(p: &AuthorizeParams, _: &Client) -> Result<(), OAuthError> {
    parse_max_age(p).map(|_| ())
}

fn check_state_nonce(p: &AuthorizeParams, _: &Client) -> Result<(), OAuthError> {
    let too_long = |v: &Option<String>| v.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN);
    if too_long(&p.state) || too_long(&p.nonce) {
        Err(OAuthError::invalid_request("state or nonce is too long"))
    } else {
        Ok(())
    }
}

fn check_resources(p: &AuthorizeParams, c: &Client) -> Result<(), OAuthError> {
    // RFC 8707 §2: an absolute URI without a fragment, and (our policy) one
    // of the targets the client was registered for.
    for r in &p.resources {
        if !r.contains("://") || r.contains('#') {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                "resource must be an absolute URI without a fragment",
            ));
        }
        if !c.audiences.contains(r) {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                format!("the client may not ask for the resource {r}"),
            ));
        }
    }
    Ok(())
}
fn check_dpop_jkt(p: &AuthorizeParams, _: &Client) -> Result<(), OAuthError> {
    match p.dpop_jkt.as_deref() {
        Some(jkt) if !super::dpop::is_thumbprint(jkt) => Err(OAuthError::invalid_request(
            "dpop_jkt must be a JWK SHA-256 thumbprint (RFC 9449 section 10)",
        )),
        _ => Ok(()),
    }
}

/// Runs every check; the first failure wins.
pub fn validate(params: &AuthorizeParams, client: Option<Client>) -> Result<AuthorizationRequest, Rejection> {
    let (client, redirect_uri) = trusted_redirect(params, client).map_err(Rejection::Page)?;
    let reject = |error: OAuthError| Rejection::Redirect {
        redirect_uri: redirect_uri.clone(),
        // A repeated state is not echoed: which one would it be?
        state: if params.malformed.as_deref() == Some("state") {
            None
        } else {
            params.state.clone()
        },
        error,
    };
    for check in CHECKS {
        (check.run)(params, &client).map_err(reject)?;
    }
    let scopes = granted_scopes(params, &client).map_err(reject)?;
    let prompt = Prompt::parse(params.prompt.as_deref()).map_err(reject)?;
    let max_age = parse_max_age(params).map_err(reject)?;
    Ok(AuthorizationRequest {
        redirect_uri: redirect_uri.clone(),
        state: params.state.clone(),
        scopes,
        nonce: params.nonce.clone(),
        code_challenge: params.code_challenge.clone(),
        prompt,
        max_age,
        login_hint: params.login_hint.clone(),
        acr_values: params.acr_values.clone(),
        resources: params.resources.clone(),
        dpop_jkt: params.dpop_jkt.clone(),
        client,
    })
}

/// What the signed-in person's session looks like to the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionView {
    /// False when the session must enter the password again.
    pub active: bool,
    pub auth_time: Timestamp,
    /// The account's email is verified.
    pub ready: bool,
    /// The person chose this session's account for this very request (the
    /// account chooser of `prompt=select_account`).
    pub chosen: bool,
}

/// What happens next with a valid request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Issue a code now.
    Issue,
    /// The person must sign in (again); `create` shows sign-up first.
    Login { create: bool },
    /// `prompt=select_account` with a signed-in browser: continue as its
    /// account, or sign in as another.
    SelectAccount,
    /// The account must verify its email first.
    Verify,
    /// Ask for consent.
    Consent,
    /// Send this error back to the client (`prompt=none`).
    Fail(OAuthError),
}

/// The person's remembered consent for this client, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsentView {
    /// It covers every requested scope.
    pub covers: bool,
    pub granted_at: Timestamp,
}

/// The decision after the checks (OpenID Connect Core §3.1.2.3):
/// `fresh_since` is when this request started waiting for the person; a
/// login or consent after it satisfies `prompt=login`, `max_age` and
/// `prompt=consent`.
pub fn decide(
    req: &AuthorizationRequest,
    session: Option<SessionView>,
    consent: Option<ConsentView>,
    fresh_since: Option<Timestamp>,
    now: Timestamp,
) -> Next {
    let fail = |code: ErrorCode, text: &str| Next::Fail(OAuthError::new(code, text));
    // §3.1.2.1 select_account: the person picks the account first. A login
    // during this request was a choice too; with nobody signed in, the
    // login form is the only choice. (`prompt=none` never gets here: the
    // two together are refused.)
    if let Some(s) = session.filter(|_| req.prompt.select_account) {
        let signed_in_now = s.active && fresh_since.is_some_and(|t| s.auth_time >= t);
        if !s.chosen && !signed_in_now {
            return Next::SelectAccount;
        }
    }
    let Some(s) = session.filter(|s| s.active) else {
        return if req.prompt.none {
            fail(ErrorCode::LoginRequired, "the user is not signed in")
        } else {
            Next::Login {
                create: req.prompt.create,
            }
        };
    };
    let authenticated_for_this_request = fresh_since.is_some_and(|t| s.auth_time >= t);
    if !authenticated_for_this_request {
        let too_old = req.max_age.is_some_and(|max| now.0 - s.auth_time.0 > max);
        // max_age=0 means "authenticate now", even within the same second.
        let must_reauth = req.prompt.login || too_old || req.max_age == Some(0);
        if must_reauth {
            return if req.prompt.none {
                fail(ErrorCode::LoginRequired, "a fresh login is required")
            } else {
                Next::Login { create: false }
            };
        }
    }
    if !s.ready {
        return if req.prompt.none {
            fail(ErrorCode::InteractionRequired, "the account must verify its email")
        } else {
            Next::Verify
        };
    }
    // Consent given during this very request counts, even for prompt=consent.
    let consented_now = consent.is_some_and(|c| c.covers && fresh_since.is_some_and(|t| c.granted_at >= t));
    let remembered = consent.is_some_and(|c| c.covers);
    if consented_now || (!req.prompt.consent && (req.client.first_party || remembered)) {
        Next::Issue
    } else if req.prompt.none {
        fail(ErrorCode::ConsentRequired, "the user has not consented")
    } else {
        Next::Consent
    }
}

/// Whether [`decide`] can depend on the user's remembered consent: not for
/// a first-party client, unless the request says `prompt=consent`.
pub fn consent_matters(req: &AuthorizationRequest) -> bool {
    req.prompt.consent || !req.client.first_party
}

/// `openid` in the scope: an OpenID Connect request.
pub fn is_openid(scopes: &Scopes) -> bool {
    scopes.contains(scope::OPENID)
}

#[cfg(test)]
mod tests {
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
}
