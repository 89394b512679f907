//! What a client does to tokens outside the grants: revoking one
//! (RFC 7009), and the record of a token exchange (RFC 8693) the token
//! endpoint made.

use gatehouse_core::audit::{Actor, AuditEvent, AuditKind};
use gatehouse_core::oauth::ClientId;
use gatehouse_core::oauth::claims::AccessTokenClaims;
use gatehouse_core::oauth::exchange::Narrowed;
use gatehouse_core::{AccountId, OpaqueToken, Timestamp};

use super::{Deps, Error};

/// The token was issued to another client than the one revoking it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotYours;

/// Revokes a token the client presents. A refresh token revokes its whole
/// family (grant); an access token, its `jti` until it would have expired
/// anyway. A token we did not issue, one expired, malformed or unknown is
/// nothing to revoke (RFC 7009 §2.2 answers it as done); another client's
/// token is refused.
pub async fn revoke(
    deps: &Deps,
    client: &ClientId,
    token: &str,
    now: Timestamp,
) -> Result<Result<(), NotYours>, Error> {
    if token.bytes().filter(|b| *b == b'.').count() == 2 {
        // Only a token we signed, not yet expired, is worth remembering.
        let Ok((_, value)) = deps.keys.verify(token, deps.settings.issuer_str()).await else {
            return Ok(Ok(()));
        };
        let Ok(claims) = serde_json::from_value::<AccessTokenClaims>(value) else {
            return Ok(Ok(()));
        };
        if claims.client_id != client.as_str() {
            return Ok(Err(NotYours));
        }
        let audit = AuditEvent::revoked_by_client(AuditKind::TokenRevoked, None, client, now)
            .with_detail(serde_json::json!({ "jti": claims.jti }));
        deps.store
            .revoke_jti(&claims.jti, Timestamp(claims.exp), &audit)
            .await?;
        return Ok(Ok(()));
    }
    let Some(token) = OpaqueToken::parse(token) else {
        return Ok(Ok(()));
    };
    let Some(record) = deps.store.refresh_token(&token.digest()).await? else {
        return Ok(Ok(()));
    };
    let Some(grant) = deps.store.grant(&record.grant_id).await? else {
        return Ok(Ok(()));
    };
    if &grant.client_id != client {
        return Ok(Err(NotYours));
    }
    revoke_family(deps, &grant.id, grant.account_id.as_ref(), client, "revoked", now).await?;
    Ok(Ok(()))
}

/// Revokes a grant's whole family at `client`'s doing, with its audit
/// event; `reason`: `revoked` (RFC 7009, a refresh token revoked), or what
/// `client` replayed (a used code presented again, a rotated refresh token
/// reused; RFC 6749 §4.1.2 and §10.4).
pub async fn revoke_family(
    deps: &Deps,
    grant_id: &str,
    account: Option<&AccountId>,
    client: &ClientId,
    reason: &str,
    now: Timestamp,
) -> Result<(), Error> {
    let audit = AuditEvent::revoked_by_client(AuditKind::GrantRevoked, account, client, now)
        .with_detail(serde_json::json!({ "grant_id": grant_id, "reason": reason }));
    deps.store.revoke_grant(grant_id, now, &audit).await?;
    Ok(())
}

/// Records a token exchange: who asked, for which audience and scopes,
/// from which subject token (and actor), the token issued.
pub async fn record_exchange(
    deps: &Deps,
    client: &ClientId,
    subject: &AccessTokenClaims,
    narrowed: &Narrowed,
    issued: &AccessTokenClaims,
    now: Timestamp,
) -> Result<(), Error> {
    // A token for a person (it has a family); a client's own token has none.
    let account = subject.gid.as_ref().map(|_| AccountId(subject.sub.clone()));
    let actor = Actor {
        ip: String::new(),
        user_agent: format!("client {client}"),
    };
    let audit =
        AuditEvent::new(AuditKind::TokenExchanged, account.as_ref(), &actor, now).with_detail(serde_json::json!({
            "client_id": client,
            "audience": narrowed.audience,
            "scope": narrowed.scopes.to_string(),
            "subject_jti": subject.jti,
            "jti": issued.jti,
            "actor": issued.act,
            "cnf": issued.cnf,
        }));
    deps.store.append_audit(&audit).await?;
    Ok(())
}
