//! The claims of the tokens we sign: JWT access tokens (RFC 9068) and ID
//! tokens (OpenID Connect Core §2), and the hashes that bind them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

use super::client::{Client, SigningAlg};
use super::scope::Scopes;
use crate::Profile;

pub use crate::protocol::ACCESS_TOKEN_TYP;

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn from_list(mut list: Vec<String>) -> Self {
        if list.len() == 1 {
            Audience::One(list.remove(0))
        } else {
            Audience::Many(list)
        }
    }

    pub fn contains(&self, aud: &str) -> bool {
        self.any(|a| a == aud)
    }

    /// Whether any audience satisfies `f`.
    pub fn any(&self, f: impl Fn(&str) -> bool) -> bool {
        match self {
            Audience::One(a) => f(a),
            Audience::Many(list) => list.iter().any(|a| f(a)),
        }
    }

    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Audience::One(a) => vec![a.clone()],
            Audience::Many(list) => list.clone(),
        }
    }
}

/// RFC 9068 §2.2, plus the grant id that ties the token to its family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The grant (token family) this token belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    /// Confirmation (RFC 7800), e.g. `{"jkt": ...}` for DPoP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<serde_json::Value>,
    /// The acting party (RFC 8693 §4.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<serde_json::Value>,
    /// Who may act for the subject (RFC 8693 §4.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may_act: Option<serde_json::Value>,
    /// For a narrowed token: the `jti` of every token it was narrowed from,
    /// nearest first. Revoking any of them makes this one inactive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_jtis: Vec<String>,
}

impl AccessTokenClaims {
    /// Whether `aud` names `id`.
    pub fn addressed_to(&self, id: &str) -> bool {
        self.aud.contains(id)
    }

    /// RFC 7662 §2.2 and §4: whether introspection may tell `caller` about
    /// this token: the client it was issued to, or a client its audience
    /// names (by client id or one of its resource URIs). Anyone else
    /// learns only `{"active": false}`.
    pub fn introspectable_by(&self, caller: &Client) -> bool {
        self.client_id == caller.id.as_str() || self.aud.any(|a| caller.is_named_by(a))
    }
}

/// OpenID Connect Core §2 and §5.1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub acr: String,
    pub amr: Vec<String>,
    pub sid: String,
    pub azp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// With the `profile` scope.
    #[serde(flatten)]
    pub profile: ProfileClaims,
}

/// The `profile` scope's claims (OpenID Connect Core §5.4), each present
/// only when the person set it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zoneinfo: Option<String>,
    /// Seconds since the epoch (§5.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
}

/// The scope that asks for the profile claims.
pub const PROFILE_SCOPE: &str = "profile";

/// The claims the `profile` scope names that we can hold (§5.4 lists more:
/// `middle_name`, `nickname`, `profile`, `picture`, `website`, `gender`,
/// `birthdate`, which we never ask for).
pub const PROFILE_CLAIMS: [&str; 7] = [
    "name",
    "given_name",
    "family_name",
    "preferred_username",
    "locale",
    "zoneinfo",
    "updated_at",
];

impl ProfileClaims {
    /// The claims of `profile` for a token whose scopes are `scopes`: none
    /// without the `profile` scope.
    pub fn of(profile: &Profile, scopes: &Scopes) -> Self {
        if scopes.contains(PROFILE_SCOPE) {
            Self::from(profile)
        } else {
            Self::default()
        }
    }
}

impl From<&Profile> for ProfileClaims {
    /// Every claim that is set.
    fn from(profile: &Profile) -> Self {
        ProfileClaims {
            name: profile.name.clone(),
            given_name: profile.given_name.clone(),
            family_name: profile.family_name.clone(),
            preferred_username: profile.preferred_username.clone(),
            locale: profile.locale.clone(),
            zoneinfo: profile.zoneinfo.clone(),
            updated_at: profile.updated_at.map(|t| t.0),
        }
    }
}

/// `at_hash` (OpenID Connect Core §3.1.3.6): the left half of the hash of
/// the access token, with the hash the signing algorithm uses (SHA-512 for
/// Ed25519).
pub fn at_hash(access_token: &str, alg: SigningAlg) -> String {
    let half = |d: &[u8]| URL_SAFE_NO_PAD.encode(&d[..d.len() / 2]);
    match alg {
        SigningAlg::ES256 | SigningAlg::RS256 => half(&Sha256::digest(access_token.as_bytes())),
        SigningAlg::EdDSA => half(&Sha512::digest(access_token.as_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_is_half_the_digest() {
        // OpenID Connect Core, example of §A.3's access token.
        assert_eq!(
            at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y", SigningAlg::RS256),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
        assert_eq!(at_hash("x", SigningAlg::EdDSA).len(), 43);
    }

    #[test]
    fn profile_claims_only_with_the_scope_and_only_when_set() {
        let profile = Profile {
            name: Some("Ada Lovelace".into()),
            locale: Some("en-GB".into()),
            updated_at: Some(crate::Timestamp(1_700_000_000)),
            ..Profile::default()
        };
        let with = ProfileClaims::of(&profile, &Scopes::from_tokens(["openid", "profile"]));
        assert_eq!(
            serde_json::to_value(&with).expect("json"),
            serde_json::json!({"name": "Ada Lovelace", "locale": "en-GB", "updated_at": 1_700_000_000})
        );
        let without = ProfileClaims::of(&profile, &Scopes::from_tokens(["openid", "email"]));
        assert_eq!(serde_json::to_value(&without).expect("json"), serde_json::json!({}));
    }

    #[test]
    fn introspection_answers_the_client_and_its_audience_only() {
        let client = |name: &str, resources: &[&str]| {
            let (mut c, _) = Client::new(
                name,
                false,
                vec![],
                vec![crate::oauth::client::GrantType::ClientCredentials],
                crate::Timestamp(0),
            )
            .expect("client");
            c.resource_uris = resources.iter().map(|r| r.to_string()).collect();
            c
        };
        let shop = client("Shop", &[]);
        let pay = client("Pay", &["https://pay.example"]);
        let api = client("Api", &[]);
        let nosy = client("Nosy", &["https://nosy.example"]);
        let token = |aud: Vec<String>| AccessTokenClaims {
            iss: "https://id.example".into(),
            sub: "user-1".into(),
            aud: Audience::from_list(aud),
            exp: 2,
            iat: 1,
            jti: "j".into(),
            client_id: shop.id.to_string(),
            scope: "payments".into(),
            auth_time: None,
            acr: None,
            amr: None,
            sid: None,
            gid: None,
            cnf: None,
            act: None,
            may_act: None,
            parent_jtis: vec![],
        };
        let narrowed = token(vec!["https://pay.example".into(), api.id.to_string()]);
        for (caller, answers) in [(&shop, true), (&pay, true), (&api, true), (&nosy, false)] {
            assert_eq!(narrowed.introspectable_by(caller), answers, "{}", caller.name);
        }
        let own = token(vec![shop.id.to_string()]);
        assert!(own.introspectable_by(&shop) && !own.introspectable_by(&pay));
        assert!(own.addressed_to(shop.id.as_str()) && !own.addressed_to("https://pay.example"));
    }

    #[test]
    fn audience_is_string_or_list() {
        let one: Audience = serde_json::from_str("\"a\"").expect("json");
        assert!(one.contains("a"));
        let many: Audience = serde_json::from_str("[\"a\",\"b\"]").expect("json");
        assert!(many.contains("b") && !many.contains("c"));
        assert_eq!(
            serde_json::to_string(&Audience::from_list(vec!["x".into()])).ok(),
            Some("\"x\"".into())
        );
    }
}
