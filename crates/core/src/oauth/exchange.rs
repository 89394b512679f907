//! Token exchange (RFC 8693) as Gatehouse allows it: narrowing only. A
//! client hands in an access token it was issued and gets a new one with the
//! same or fewer scopes, addressed to a target it may narrow to
//! (`--audience` at `client create`, RFC 8707 resources included), living no
//! longer than the token it came from.

use serde_json::{Value, json};

use super::claims::AccessTokenClaims;
use super::client::Client;
use super::error::{ErrorCode, OAuthError};
use super::scope::Scopes;
use crate::Timestamp;

pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
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
    // 2. The subject token was issued to the caller.
    if req.subject.client_id != req.caller.id.as_str() {
        return Err(OAuthError::invalid_grant(
            "the subject token was issued to another client",
        ));
    }
    if req.subject.parent_jtis.len() >= MAX_DEPTH {
        return Err(OAuthError::invalid_grant(
            "the subject token cannot be narrowed further",
        ));
    }
    // 3. Narrowing only: the scopes are a subset of the subject token's.
    let held = Scopes::parse(&req.subject.scope).unwrap_or_default();
    let scopes = match req.scope {
        Some(s) => Scopes::parse(s).map_err(|_| error(ErrorCode::InvalidScope, "malformed scope"))?,
        None => held.clone(),
    };
    if !scopes.is_subset(&held) {
        return Err(error(ErrorCode::InvalidScope, "the scope exceeds the subject token's"));
    }
    // 4. The target is one the caller may narrow to.
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
    // 5. An actor, if any, is allowed by the subject's may_act.
    let act = match req.actor {
        None => None,
        Some(actor) => {
            if let Some(may_act) = &req.subject.may_act {
                let allowed = may_act.get("sub").and_then(Value::as_str) == Some(actor.sub.as_str())
                    || may_act.get("client_id").and_then(Value::as_str) == Some(actor.client_id.as_str());
                if !allowed {
                    return Err(OAuthError::invalid_grant(
                        "the actor may not act for the subject (may_act)",
                    ));
                }
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
        return Err(OAuthError::invalid_grant("the subject token has expired"));
    }
    let mut parent_jtis = vec![req.subject.jti.clone()];
    parent_jtis.extend(req.subject.parent_jtis.iter().cloned());
    Ok(Narrowed {
        scopes,
        audience: targets,
        lifetime,
        act,
        parent_jtis,
    })
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
            Err(ErrorCode::InvalidGrant)
        );
        assert_eq!(
            code(narrow(&request(&c, &s, None, &pay), 300, Timestamp(1_300))),
            Err(ErrorCode::InvalidGrant)
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
    fn actors_and_may_act() {
        let c = relier();
        let mut s = subject(&c);
        let mut actor = subject(&c);
        actor.sub = "pay-service".into();
        let pay = ["pay".to_owned()];
        let mut r = request(&c, &s, None, &pay);
        r.actor = Some(&actor);
        let n = narrow(&r, 300, Timestamp(1_100)).expect("with an actor");
        assert_eq!(n.act.as_ref().and_then(|a| a["sub"].as_str()), Some("pay-service"));
        s.may_act = Some(json!({ "sub": "someone-else" }));
        let mut r = request(&c, &s, None, &pay);
        r.actor = Some(&actor);
        assert_eq!(
            narrow(&r, 300, Timestamp(1_100)).map_err(|e| e.code).err(),
            Some(ErrorCode::InvalidGrant)
        );
    }
}
