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
mod tests;
