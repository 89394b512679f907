//! Token exchange (RFC 8693) as Gatehouse allows it: narrowing only. A
//! client hands in an access token it was issued and gets a new one with the
//! same or fewer scopes, addressed to a target it may narrow to
//! (`--audience` at `client create`, RFC 8707 resources included), living no
//! longer than the token it came from, and never less constrained: a
//! DPoP-bound subject (or actor) token is exchanged only with a proof by its
//! key (RFC 9449), and the new token is bound to that key.

use serde_json::{Value, json};

use super::claims::AccessTokenClaims;
use super::client::Client;
use super::error::{ErrorCode, OAuthError};
use super::scope::Scopes;
use crate::Timestamp;

pub use crate::protocol::{ACCESS_TOKEN_TYPE, JWT_TYPE};
/// How many times a token may be narrowed in a row.
pub const MAX_DEPTH: usize = 4;

/// What the client asked for, already parsed.
pub struct Request<'a> {
    pub caller: &'a Client,
    /// The active subject token's claims.
    pub subject: &'a AccessTokenClaims,
    /// The active actor token's claims, if one was given.
    pub actor: Option<&'a AccessTokenClaims>,
    pub scope: Option<&'a str>,
    pub audiences: &'a [String],
    pub resources: &'a [String],
    pub requested_token_type: Option<&'a str>,
    /// The thumbprint of the key of the request's DPoP proof (verified), if
    /// it came with one.
    pub proof_jkt: Option<&'a str>,
}

/// The token to issue.
#[derive(Debug, PartialEq)]
pub struct Narrowed {
    pub scopes: Scopes,
    pub audience: Vec<String>,
    /// Seconds it may live: never past the subject token's expiry.
    pub lifetime: i64,
    pub act: Option<Value>,
    pub parent_jtis: Vec<String>,
    /// The DPoP key (thumbprint) it is bound to: the proof's, which is the
    /// subject's key when the subject is bound.
    pub jkt: Option<String>,
}

fn error(code: ErrorCode, text: &str) -> OAuthError {
    OAuthError::new(code, text)
}

/// The checks, in order.
pub fn narrow(req: &Request<'_>, max_lifetime: i64, now: Timestamp) -> Result<Narrowed, OAuthError> {
    // 1. We only issue access tokens.
    if req
        .requested_token_type
        .is_some_and(|t| t != ACCESS_TOKEN_TYPE && t != JWT_TYPE)
    {
        return Err(OAuthError::invalid_request("requested_token_type is not supported"));
    }
    // 2. The subject token was issued to the caller. A subject (or actor)
    //    token that is not acceptable is `invalid_request` (RFC 8693
    //    §2.2.2), whatever the reason.
    if req.subject.client_id != req.caller.id.as_str() {
        return Err(OAuthError::invalid_request(
            "the subject token was issued to another client",
        ));
    }
    if req.subject.parent_jtis.len() >= MAX_DEPTH {
        return Err(OAuthError::invalid_request(
            "the subject token cannot be narrowed further",
        ));
    }
    // 3. A sender-constrained subject token is exchanged only by the holder
    //    of its key (RFC 9449): with a proof by that key, whose key then
    //    binds the new token. Without it, a stolen token could be turned
    //    into a bearer token, or bound to the thief's key.
    if let Some(bound) = bound_jkt(req.subject)
        && req.proof_jkt != Some(bound)
    {
        return Err(OAuthError::invalid_request(
            "the subject token is DPoP-bound: send a DPoP proof made with its key",
        ));
    }
    // 4. Narrowing only: the scopes are a subset of the subject token's.
    let held = Scopes::parse(&req.subject.scope).unwrap_or_default();
    let scopes = match req.scope {
        Some(s) => Scopes::parse(s).map_err(|_| error(ErrorCode::InvalidScope, "malformed scope"))?,
        None => held.clone(),
    };
    if !scopes.is_subset(&held) {
        return Err(error(ErrorCode::InvalidScope, "the scope exceeds the subject token's"));
    }
    // 5. The target is one the caller may narrow to.
    let targets: Vec<String> = req.audiences.iter().chain(req.resources).cloned().collect();
    if targets.is_empty() {
        return Err(error(
            ErrorCode::InvalidTarget,
            "name the target with audience or resource",
        ));
    }
    if let Some(t) = targets.iter().find(|t| !req.caller.audiences.contains(t)) {
        return Err(error(
            ErrorCode::InvalidTarget,
            &format!("the client may not narrow tokens to {t}"),
        ));
    }
    // 6. An actor, if any, is the authenticated client itself (its own
    //    client-credentials token) or one the subject's `may_act` names
    //    (RFC 8693 §4.4); a bound actor token, like the subject, needs a
    //    proof by its key. Anything else is `invalid_request` (§2.2.2), so
    //    nobody is written into `act` who did not prove to be the actor.
    let act = match req.actor {
        None => None,
        Some(actor) => {
            let is_caller = actor.sub == req.caller.id.as_str() && actor.client_id == req.caller.id.as_str();
            let allowed = req.subject.may_act.as_ref().is_some_and(|m| may_act_allows(m, actor));
            if !is_caller && !allowed {
                return Err(OAuthError::invalid_request(
                    "the actor token must be the client's own, or one the subject's may_act names",
                ));
            }
            if let Some(bound) = bound_jkt(actor)
                && req.proof_jkt != Some(bound)
            {
                return Err(OAuthError::invalid_request(
                    "the actor token is DPoP-bound: send a DPoP proof made with its key",
                ));
            }
            let mut act = json!({ "sub": actor.sub, "client_id": actor.client_id });
            if let Some(prior) = &actor.act {
                act["act"] = prior.clone();
            }
            Some(act)
        }
    };
    let lifetime = (req.subject.exp - now.0).min(max_lifetime);
    if lifetime <= 0 {
        return Err(OAuthError::invalid_request("the subject token has expired"));
    }
    let mut parent_jtis = vec![req.subject.jti.clone()];
    parent_jtis.extend(req.subject.parent_jtis.iter().cloned());
    Ok(Narrowed {
        scopes,
        audience: targets,
        lifetime,
        act,
        parent_jtis,
        jkt: req.proof_jkt.map(str::to_owned),
    })
}

/// The thumbprint a token's `cnf` binds it to (RFC 9449 §6.1), if any.
fn bound_jkt(claims: &AccessTokenClaims) -> Option<&str> {
    claims.cnf.as_ref()?.get("jkt")?.as_str()
}

/// Whether `may_act` (RFC 8693 §4.4) names `actor`: by `sub` or
/// `client_id`, and every identifying claim it names (`iss`, `sub`,
/// `client_id`) is the actor's.
fn may_act_allows(may_act: &Value, actor: &AccessTokenClaims) -> bool {
    let named = |claim: &str| may_act.get(claim).map(Value::as_str);
    let matches = |claim: &str, value: &str| named(claim).is_none_or(|v| v == Some(value));
    (named("sub").is_some() || named("client_id").is_some())
        && matches("iss", &actor.iss)
        && matches("sub", &actor.sub)
        && matches("client_id", &actor.client_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::claims::Audience;

    fn relier() -> Client {
        let (mut c, _) = Client::new(
            "Shop",
            false,
            vec!["https://shop.example/cb".into()],
            vec![],
            Timestamp(0),
        )
        .expect("client");
        c.audiences = vec!["pay".into(), "https://pay.example/api".into()];
        c
    }

    fn subject(client: &Client) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "https://id.example".into(),
            sub: "user-1".into(),
            aud: Audience::One(client.id.to_string()),
            exp: 1_300,
            iat: 1_000,
            jti: "j1".into(),
            client_id: client.id.to_string(),
            scope: "openid profile payments secret".into(),
            auth_time: None,
            acr: None,
            amr: None,
            sid: None,
            gid: Some("g1".into()),
            cnf: None,
            act: None,
            may_act: None,
            parent_jtis: vec![],
        }
    }

    fn request<'a>(c: &'a Client, s: &'a AccessTokenClaims, scope: Option<&'a str>, aud: &'a [String]) -> Request<'a> {
        Request {
            caller: c,
            subject: s,
            actor: None,
            scope,
            audiences: aud,
            resources: &[],
            requested_token_type: None,
            proof_jkt: None,
        }
    }

    #[test]
    fn narrows_to_payments_for_the_payments_service() {
        let c = relier();
        let s = subject(&c);
        let aud = ["pay".to_owned()];
        let n = narrow(&request(&c, &s, Some("payments"), &aud), 300, Timestamp(1_100)).expect("narrowed");
        assert_eq!(n.scopes.to_string(), "payments");
        assert_eq!(n.audience, ["pay"]);
        assert_eq!(n.lifetime, 200, "never past the subject token");
        assert_eq!(n.parent_jtis, ["j1"]);
    }

    #[test]
    fn refusals_carry_the_rfc_code() {
        let c = relier();
        let s = subject(&c);
        let pay = ["pay".to_owned()];
        let other = ["elsewhere".to_owned()];
        let code = |r: Result<Narrowed, OAuthError>| r.map(|_| ()).map_err(|e| e.code);
        let now = Timestamp(1_100);
        assert_eq!(
            code(narrow(&request(&c, &s, Some("payments admin"), &pay), 300, now)),
            Err(ErrorCode::InvalidScope)
        );
        assert_eq!(
            code(narrow(&request(&c, &s, Some("payments"), &other), 300, now)),
            Err(ErrorCode::InvalidTarget)
        );
        assert_eq!(
            code(narrow(&request(&c, &s, Some("payments"), &[]), 300, now)),
            Err(ErrorCode::InvalidTarget)
        );
        let mut foreign = s.clone();
        foreign.client_id = "c_other".into();
        assert_eq!(
            code(narrow(&request(&c, &foreign, None, &pay), 300, now)),
            Err(ErrorCode::InvalidRequest)
        );
        assert_eq!(
            code(narrow(&request(&c, &s, None, &pay), 300, Timestamp(1_300))),
            Err(ErrorCode::InvalidRequest)
        );
        let mut r = request(&c, &s, None, &pay);
        r.requested_token_type = Some("urn:ietf:params:oauth:token-type:refresh_token");
        assert_eq!(code(narrow(&r, 300, now)), Err(ErrorCode::InvalidRequest));
    }

    #[test]
    fn a_narrowed_token_never_widens_again() {
        let c = relier();
        let s = subject(&c);
        let pay = ["pay".to_owned()];
        let n = narrow(&request(&c, &s, Some("payments"), &pay), 300, Timestamp(1_100)).expect("narrowed");
        let mut second = s.clone();
        second.scope = n.scopes.to_string();
        second.jti = "j2".into();
        second.parent_jtis = n.parent_jtis.clone();
        let again = narrow(&request(&c, &second, Some("payments"), &pay), 300, Timestamp(1_100)).expect("same scope");
        assert_eq!(again.parent_jtis, ["j2", "j1"]);
        let wider = narrow(
            &request(&c, &second, Some("payments profile"), &pay),
            300,
            Timestamp(1_100),
        );
        assert_eq!(wider.map_err(|e| e.code).err(), Some(ErrorCode::InvalidScope));
    }

    #[test]
    fn actors_are_the_caller_or_named_by_may_act() {
        let c = relier();
        let mut s = subject(&c);
        let pay = ["pay".to_owned()];
        let code = |r: Result<Narrowed, OAuthError>| r.map(|n| n.act).map_err(|e| e.code);
        let now = Timestamp(1_100);
        // The caller's own client-credentials token: written into act.
        let mut own = subject(&c);
        own.sub = c.id.to_string();
        let mut r = request(&c, &s, None, &pay);
        r.actor = Some(&own);
        let act = code(narrow(&r, 300, now)).expect("the caller as actor");
        assert_eq!(act, Some(json!({ "sub": c.id.as_str(), "client_id": c.id.as_str() })));
        // Any other active token (a user's, another client's) is refused,
        // and nobody is written into act.
        let mut user = subject(&c);
        user.sub = "user-2".into();
        let mut other_client = subject(&c);
        other_client.sub = "c_other".into();
        other_client.client_id = "c_other".into();
        let mut ours_but_issued_elsewhere = own.clone();
        ours_but_issued_elsewhere.client_id = "c_other".into();
        for actor in [&user, &other_client, &ours_but_issued_elsewhere] {
            let mut r = request(&c, &s, None, &pay);
            r.actor = Some(actor);
            assert_eq!(
                code(narrow(&r, 300, now)),
                Err(ErrorCode::InvalidRequest),
                "{}",
                actor.sub
            );
        }
        // may_act names who else may act: by sub (and iss, client_id if named).
        s.may_act = Some(json!({ "sub": "user-2" }));
        let mut r = request(&c, &s, None, &pay);
        r.actor = Some(&user);
        assert!(code(narrow(&r, 300, now)).expect("named").is_some());
        for may_act in [
            json!({ "sub": "someone-else" }),
            json!({ "sub": "user-2", "iss": "https://elsewhere.example" }),
            json!({ "sub": "user-2", "client_id": "c_other" }),
            json!({ "iss": "https://id.example" }),
            json!({ "sub": 7 }),
            json!("user-2"),
        ] {
            s.may_act = Some(may_act.clone());
            let mut r = request(&c, &s, None, &pay);
            r.actor = Some(&user);
            assert_eq!(code(narrow(&r, 300, now)), Err(ErrorCode::InvalidRequest), "{may_act}");
        }
        // The caller stays allowed whatever may_act says.
        let mut r = request(&c, &s, None, &pay);
        r.actor = Some(&own);
        assert!(code(narrow(&r, 300, now)).is_ok());
    }

    #[test]
    fn a_bound_token_is_exchanged_only_with_its_key_and_stays_bound() {
        let c = relier();
        let pay = ["pay".to_owned()];
        let now = Timestamp(1_100);
        let mut bound = subject(&c);
        bound.cnf = Some(json!({ "jkt": "key-k" }));
        let with = |proof: Option<&'static str>| {
            let mut r = request(&c, &bound, Some("payments"), &pay);
            r.proof_jkt = proof;
            narrow(&r, 300, now).map(|n| n.jkt).map_err(|e| e.code)
        };
        assert_eq!(with(None), Err(ErrorCode::InvalidRequest), "no proof");
        assert_eq!(with(Some("key-thief")), Err(ErrorCode::InvalidRequest), "another key");
        assert_eq!(
            with(Some("key-k")),
            Ok(Some("key-k".to_owned())),
            "bound to the same key"
        );
        // An unbound subject may be bound by the proof (to the receiving
        // service's key), or stay a bearer token without one.
        let unbound = subject(&c);
        let mut r = request(&c, &unbound, None, &pay);
        assert_eq!(narrow(&r, 300, now).expect("bearer").jkt, None);
        r.proof_jkt = Some("key-pay");
        assert_eq!(narrow(&r, 300, now).expect("bound").jkt.as_deref(), Some("key-pay"));
        // A bound actor token needs a proof by its key too.
        let mut own = subject(&c);
        own.sub = c.id.to_string();
        own.cnf = Some(json!({ "jkt": "key-a" }));
        for (proof, ok) in [(None, false), (Some("key-pay"), false), (Some("key-a"), true)] {
            let mut r = request(&c, &unbound, None, &pay);
            r.actor = Some(&own);
            r.proof_jkt = proof;
            let got = narrow(&r, 300, now).map(|n| n.jkt).map_err(|e| e.code);
            if ok {
                assert_eq!(got, Ok(Some("key-a".to_owned())));
            } else {
                assert_eq!(got, Err(ErrorCode::InvalidRequest), "{proof:?}");
            }
        }
        // Subject and actor bound to different keys: one proof cannot do both.
        let mut r = request(&c, &bound, None, &pay);
        r.actor = Some(&own);
        r.proof_jkt = Some("key-k");
        assert_eq!(
            narrow(&r, 300, now).map_err(|e| e.code).err(),
            Some(ErrorCode::InvalidRequest)
        );
    }
}
