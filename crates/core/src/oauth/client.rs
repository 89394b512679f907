//! Clients (reliers): who they are, how they authenticate, where they may
//! send people back to, and what they may ask for.

use serde::{Deserialize, Serialize};
use std::fmt;

use super::scope::Scopes;
use crate::{OpaqueToken, Timestamp, TokenDigest};

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientId(pub String);

impl ClientId {
    pub fn generate() -> Self {
        Self(format!("c_{}", uuid::Uuid::new_v4().simple()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum GrantType {
    #[serde(rename = "authorization_code")]
    AuthorizationCode,
    #[serde(rename = "refresh_token")]
    RefreshToken,
    #[serde(rename = "client_credentials")]
    ClientCredentials,
    #[serde(rename = "urn:ietf:params:oauth:grant-type:token-exchange")]
    TokenExchange,
}

impl GrantType {
    pub const ALL: [GrantType; 4] = [
        Self::AuthorizationCode,
        Self::RefreshToken,
        Self::ClientCredentials,
        Self::TokenExchange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
            Self::TokenExchange => "urn:ietf:params:oauth:grant-type:token-exchange",
        }
    }

    /// Accepts the RFC name; `token-exchange` is accepted as a short form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "token-exchange" | "token_exchange" => Some(Self::TokenExchange),
            _ => Self::ALL.into_iter().find(|g| g.as_str() == s),
        }
    }
}

/// Algorithms a client may ask its ID tokens to be signed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlg {
    ES256,
    EdDSA,
    RS256,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 3] = [Self::ES256, Self::EdDSA, Self::RS256];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
            Self::RS256 => "RS256",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub id: ClientId,
    pub name: String,
    /// SHA-256 of the secret; `None` for a public client.
    pub secret_digest: Option<TokenDigest>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// The scopes it may ask for.
    pub scopes: Scopes,
    /// Client ids (or resource URIs) it may narrow tokens to.
    pub audiences: Vec<String>,
    /// As a resource server: the identifiers (RFC 8707 resource URIs) by
    /// which a token's `aud` names it, besides its client id. Introspection
    /// answers it about tokens addressed to one of them.
    pub resource_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    /// Skips the consent screen.
    pub first_party: bool,
    pub backchannel_logout_uri: Option<String>,
    pub events_uri: Option<String>,
    pub id_token_alg: SigningAlg,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("a redirect URI must be an absolute https URL, or http on loopback, with no fragment: {0}")]
    BadRedirectUri(String),
    #[error("a client needs at least one redirect URI for the authorization code grant")]
    NoRedirectUri,
    #[error("a public client cannot use the client credentials grant")]
    PublicClientCredentials,
    #[error("a name is required (at most 100 characters)")]
    BadName,
    #[error("malformed URI: {0}")]
    BadUri(String),
    #[error("malformed scope list: {0}")]
    BadScope(String),
    #[error("unknown grant type: {0}")]
    BadGrantType(String),
    #[error("unknown signing algorithm {0} (ES256, EdDSA or RS256)")]
    BadAlg(String),
}

/// RFC 9700 §4.1 and OAuth 2.1: redirect URIs are compared exactly, so they
/// must be registered in full: absolute, no fragment; https, or http only on
/// loopback (RFC 8252 §7.3); or a private-use scheme for native apps.
pub fn check_redirect_uri(uri: &str) -> Result<(), ClientError> {
    let bad = || ClientError::BadRedirectUri(uri.to_owned());
    if uri.len() > 2000 || uri.contains('#') || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (scheme, rest) = uri.split_once("://").ok_or_else(bad)?;
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host_only = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let hostname = if host_only.starts_with('[') {
        host_only.split(']').next().map(|h| format!("{h}]")).unwrap_or_default()
    } else {
        host_only.split(':').next().unwrap_or_default().to_owned()
    };
    match scheme {
        "https" if !hostname.is_empty() => Ok(()),
        "http" if matches!(hostname.as_str(), "127.0.0.1" | "[::1]" | "localhost") => Ok(()),
        s if s.contains('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+')) =>
        {
            Ok(())
        }
        _ => Err(bad()),
    }
}

/// The origin (RFC 6454) of an http(s) URI, serialized as a browser sends
/// it in `Origin` (scheme, host, and the port unless it is the default);
/// `None` for any other scheme, whose origin is opaque (a browser sends
/// `null` for it, which names no one).
pub fn web_origin(uri: &str) -> Option<String> {
    let url = url::Url::parse(uri).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let origin = url.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// A plain absolute http(s) URI (logout and event endpoints).
pub fn check_uri(uri: &str) -> Result<(), ClientError> {
    let ok = (uri.starts_with("https://") || uri.starts_with("http://"))
        && uri.len() <= 2000
        && !uri.contains('#')
        && !uri.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(ClientError::BadUri(uri.to_owned()))
    }
}

/// A resource identifier (RFC 8707 §2): an absolute URI without a fragment.
pub fn check_resource_uri(uri: &str) -> Result<(), ClientError> {
    let scheme_ok = uri.split_once(':').is_some_and(|(scheme, rest)| {
        !rest.is_empty()
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    if scheme_ok && uri.len() <= 2000 && !uri.contains('#') && !uri.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        Ok(())
    } else {
        Err(ClientError::BadUri(uri.to_owned()))
    }
}

/// Changes to a client, as the CLI and the admin API take them: every field
/// optional, `None` leaves it as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
    pub audiences: Option<Vec<String>>,
    pub resource_uris: Option<Vec<String>>,
    pub grant_types: Option<Vec<String>>,
    pub first_party: Option<bool>,
    /// `""` clears it.
    pub backchannel_logout_uri: Option<String>,
    /// `""` clears it.
    pub events_uri: Option<String>,
    pub id_token_signed_response_alg: Option<String>,
}

impl Client {
    /// Applies `settings`, then checks the whole client. On error the
    /// client is unchanged.
    pub fn apply(&mut self, settings: &ClientSettings) -> Result<(), ClientError> {
        let mut next = self.clone();
        if let Some(name) = &settings.name {
            next.name = name.trim().to_owned();
        }
        if let Some(v) = &settings.redirect_uris {
            next.redirect_uris = v.clone();
        }
        if let Some(v) = &settings.post_logout_redirect_uris {
            next.post_logout_redirect_uris = v.clone();
        }
        if let Some(v) = &settings.scopes {
            next.scopes = Scopes::parse(&v.join(" ")).map_err(|_| ClientError::BadScope(v.join(" ")))?;
        }
        if let Some(v) = &settings.audiences {
            next.audiences = v.clone();
        }
        if let Some(v) = &settings.resource_uris {
            next.resource_uris = v.clone();
        }
        if let Some(v) = &settings.grant_types {
            next.grant_types = v
                .iter()
                .map(|g| GrantType::parse(g).ok_or_else(|| ClientError::BadGrantType(g.clone())))
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = settings.first_party {
            next.first_party = v;
        }
        if let Some(v) = &settings.backchannel_logout_uri {
            next.backchannel_logout_uri = (!v.is_empty()).then(|| v.clone());
        }
        if let Some(v) = &settings.events_uri {
            next.events_uri = (!v.is_empty()).then(|| v.clone());
        }
        if let Some(v) = &settings.id_token_signed_response_alg {
            next.id_token_alg = SigningAlg::parse(v).ok_or_else(|| ClientError::BadAlg(v.clone()))?;
        }
        next.validate()?;
        *self = next;
        Ok(())
    }

    /// The client as the admin API and `client show` print it (never the
    /// secret digest).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "client_id": self.id,
            "name": self.name,
            "public": self.is_public(),
            "first_party": self.first_party,
            "redirect_uris": self.redirect_uris,
            "post_logout_redirect_uris": self.post_logout_redirect_uris,
            "scopes": self.scopes.iter().collect::<Vec<_>>(),
            "audiences": self.audiences,
            "resource_uris": self.resource_uris,
            "grant_types": self.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
            "backchannel_logout_uri": self.backchannel_logout_uri,
            "events_uri": self.events_uri,
            "id_token_signed_response_alg": self.id_token_alg.as_str(),
            "created_at": self.created_at.0,
        })
    }

    /// A new client; returns the secret to show once (confidential clients).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        public: bool,
        redirect_uris: Vec<String>,
        grant_types: Vec<GrantType>,
        now: Timestamp,
    ) -> Result<(Client, Option<OpaqueToken>), ClientError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(ClientError::BadName);
        }
        let secret = (!public).then(OpaqueToken::generate);
        let grant_types = if grant_types.is_empty() {
            vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
        } else {
            grant_types
        };
        let client = Client {
            id: ClientId::generate(),
            name: name.to_owned(),
            secret_digest: secret.as_ref().map(OpaqueToken::digest),
            redirect_uris,
            post_logout_redirect_uris: Vec::new(),
            scopes: Scopes::from_tokens(["openid", "profile", "email", "offline_access"]),
            audiences: Vec::new(),
            resource_uris: Vec::new(),
            grant_types,
            first_party: false,
            backchannel_logout_uri: None,
            events_uri: None,
            id_token_alg: SigningAlg::ES256,
            created_at: now,
        };
        client.validate()?;
        Ok((client, secret))
    }

    /// The rules every stored client meets.
    pub fn validate(&self) -> Result<(), ClientError> {
        if self.name.trim().is_empty() || self.name.chars().count() > 100 {
            return Err(ClientError::BadName);
        }
        if self.is_public() && self.allows(GrantType::ClientCredentials) {
            return Err(ClientError::PublicClientCredentials);
        }
        if self.allows(GrantType::AuthorizationCode) && self.redirect_uris.is_empty() {
            return Err(ClientError::NoRedirectUri);
        }
        for uri in &self.redirect_uris {
            check_redirect_uri(uri)?;
        }
        for uri in self
            .post_logout_redirect_uris
            .iter()
            .chain(&self.backchannel_logout_uri)
            .chain(&self.events_uri)
        {
            check_uri(uri)?;
        }
        for uri in &self.resource_uris {
            check_resource_uri(uri)?;
        }
        Ok(())
    }

    /// Whether `aud` names this client: its id, or one of its resource URIs.
    pub fn is_named_by(&self, aud: &str) -> bool {
        aud == self.id.as_str() || self.resource_uris.iter().any(|r| r == aud)
    }

    pub fn is_public(&self) -> bool {
        self.secret_digest.is_none()
    }

    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// The origins a browser may call the token endpoint, UserInfo and
    /// revocation from for this client: those of a public client's http(s)
    /// redirect URIs (a single-page app is served where it is sent back to).
    /// None for a confidential client: its secret has no place in a browser.
    pub fn cors_origins(&self) -> impl Iterator<Item = String> + '_ {
        self.redirect_uris
            .iter()
            .filter(|_| self.is_public())
            .filter_map(|uri| web_origin(uri))
    }

    /// Exact string comparison, as RFC 9700 §4.1.3 requires.
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r == uri)
    }

    /// Checks a presented secret against the stored digest, in constant time.
    pub fn secret_matches(&self, presented: &str) -> bool {
        match &self.secret_digest {
            Some(d) => {
                let given = TokenDigest::of(presented);
                subtle::ConstantTimeEq::ct_eq(given.as_str().as_bytes(), d.as_str().as_bytes()).into()
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_must_be_exact_and_safe() {
        for ok in [
            "https://rp.example.com/cb",
            "https://rp.example.com:8443/cb?x=1",
            "http://127.0.0.1:3000/cb",
            "http://localhost/cb",
            "http://[::1]:80/cb",
            "com.example.app:/oauth2redirect",
        ] {
            let r = if ok.contains("://") {
                check_redirect_uri(ok)
            } else {
                Ok(())
            };
            assert!(r.is_ok(), "{ok}");
        }
        for bad in [
            "http://rp.example.com/cb",
            "https://rp.example.com/cb#frag",
            "/relative",
            "javascript://alert(1)",
            "https://",
            "https://a b/",
            "http://127.0.0.1.evil.example/cb",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn new_clients() {
        let (c, secret) = Client::new(
            "Shop",
            false,
            vec!["https://shop.example/cb".into()],
            vec![],
            Timestamp(0),
        )
        .expect("valid");
        let secret = secret.expect("confidential clients get a secret");
        assert!(c.secret_matches(secret.expose()));
        assert!(!c.secret_matches("wrong"));
        assert!(c.allows(GrantType::AuthorizationCode) && c.allows(GrantType::RefreshToken));
        assert!(!c.allows(GrantType::ClientCredentials));
        assert!(c.has_redirect_uri("https://shop.example/cb"));
        assert!(!c.has_redirect_uri("https://shop.example/cb/"));

        let (p, none) =
            Client::new("App", true, vec!["http://127.0.0.1/cb".into()], vec![], Timestamp(0)).expect("valid");
        assert!(none.is_none() && p.is_public());
        assert!(!p.secret_matches(""));
        assert_eq!(
            Client::new("App", true, vec![], vec![GrantType::ClientCredentials], Timestamp(0)).err(),
            Some(ClientError::PublicClientCredentials)
        );
        assert_eq!(
            Client::new("", false, vec![], vec![], Timestamp(0)).err(),
            Some(ClientError::BadName)
        );
        assert_eq!(
            Client::new("x", false, vec![], vec![], Timestamp(0)).err(),
            Some(ClientError::NoRedirectUri)
        );
        assert!(Client::new("x", false, vec![], vec![GrantType::ClientCredentials], Timestamp(0)).is_ok());
    }

    #[test]
    fn settings_apply_all_or_nothing() {
        let (mut c, _) = Client::new(
            "Shop",
            false,
            vec!["https://shop.example/cb".into()],
            vec![],
            Timestamp(0),
        )
        .expect("valid");
        let ok = ClientSettings {
            scopes: Some(vec!["openid".into(), "payments".into()]),
            grant_types: Some(vec!["authorization_code".into(), "token-exchange".into()]),
            audiences: Some(vec!["pay".into()]),
            events_uri: Some("https://shop.example/events".into()),
            ..Default::default()
        };
        c.apply(&ok).expect("applies");
        assert!(c.scopes.contains("payments") && c.allows(GrantType::TokenExchange));
        let before = c.clone();
        let bad = ClientSettings {
            name: Some("New".into()),
            redirect_uris: Some(vec!["http://evil.example/cb".into()]),
            ..Default::default()
        };
        assert!(c.apply(&bad).is_err());
        assert_eq!(c, before, "a failed update changes nothing");
        assert!(
            c.apply(&ClientSettings {
                grant_types: Some(vec!["implicit".into()]),
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            c.apply(&ClientSettings {
                id_token_signed_response_alg: Some("HS256".into()),
                ..Default::default()
            })
            .is_err()
        );
        c.apply(&ClientSettings {
            events_uri: Some(String::new()),
            ..Default::default()
        })
        .expect("clears");
        assert_eq!(c.events_uri, None);
        assert!(c.to_json().get("secret_digest").is_none());
    }

    #[test]
    fn web_origins_as_browsers_send_them() {
        for (uri, origin) in [
            ("https://spa.example.com/cb", Some("https://spa.example.com")),
            ("https://spa.example.com:443/cb?x=1", Some("https://spa.example.com")),
            ("https://SPA.Example.com:8443/a/b", Some("https://spa.example.com:8443")),
            ("http://127.0.0.1:3000/cb", Some("http://127.0.0.1:3000")),
            ("http://localhost/cb", Some("http://localhost")),
            ("http://[::1]:8080/cb", Some("http://[::1]:8080")),
            ("https://bücher.example/cb", Some("https://xn--bcher-kva.example")),
            ("com.example.app:/oauth2redirect", None),
            ("com.example.app://cb", None),
            ("/relative", None),
        ] {
            assert_eq!(web_origin(uri).as_deref(), origin, "{uri}");
        }
    }

    #[test]
    fn resource_uris_name_the_client_as_an_audience() {
        let (mut c, _) =
            Client::new("Pay", false, vec![], vec![GrantType::ClientCredentials], Timestamp(0)).expect("valid");
        c.apply(&ClientSettings {
            resource_uris: Some(vec!["https://pay.example".into(), "urn:example:pay".into()]),
            ..Default::default()
        })
        .expect("applies");
        assert!(c.is_named_by(c.id.as_str()));
        assert!(c.is_named_by("https://pay.example") && c.is_named_by("urn:example:pay"));
        assert!(!c.is_named_by("https://pay.example/") && !c.is_named_by("https://shop.example"));
        assert_eq!(c.to_json()["resource_uris"][1], "urn:example:pay");
        for bad in ["relative/path", "https://pay.example/#frag", "", "https://pay example"] {
            let before = c.clone();
            let settings = ClientSettings {
                resource_uris: Some(vec![bad.into()]),
                ..Default::default()
            };
            assert_eq!(c.apply(&settings), Err(ClientError::BadUri(bad.into())), "{bad:?}");
            assert_eq!(c, before);
        }
    }

    #[test]
    fn only_public_clients_have_cors_origins() {
        let uris = vec![
            "https://spa.example.com/cb".to_owned(),
            "https://spa.example.com/other".to_owned(),
            "com.example.app://cb".to_owned(),
        ];
        let (public, _) = Client::new(
            "SPA",
            true,
            uris.clone(),
            vec![GrantType::AuthorizationCode],
            Timestamp(0),
        )
        .expect("public client");
        let origins: Vec<String> = public.cors_origins().collect();
        assert_eq!(origins, ["https://spa.example.com", "https://spa.example.com"]);
        let (confidential, _) = Client::new("Web", false, uris, vec![GrantType::AuthorizationCode], Timestamp(0))
            .expect("confidential client");
        assert_eq!(confidential.cors_origins().count(), 0);
    }

    #[test]
    fn grant_type_names() {
        for g in GrantType::ALL {
            assert_eq!(GrantType::parse(g.as_str()), Some(g));
        }
        assert_eq!(GrantType::parse("token-exchange"), Some(GrantType::TokenExchange));
        assert_eq!(GrantType::parse("implicit"), None);
    }
}
