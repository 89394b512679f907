//! DPoP (RFC 9449): checking a proof JWT against the request it came with,
//! and the JWK thumbprint (RFC 7638) that names its key. Pure: the caller
//! passes the request's method and URL, the time, the access token and the
//! nonce it expects; remembering `jti`s (replay) and issuing nonces are the
//! server's business.
//!
//! [`verify_proof`] runs the checks of RFC 9449 §4.3: one compact JWS whose
//! header has `typ: dpop+jwt`, an asymmetric `alg` we accept ([`ALGS`]) and
//! a public `jwk` (no private members) whose key type fits the `alg`; the
//! signature verifies with that key; the claims `jti`, `htm` (the method),
//! `htu` (the URL without query and fragment, compared after syntax- and
//! scheme-based normalisation), `iat` (within [`MAX_PROOF_AGE`] of `now`,
//! either way), `ath` (when an access token is presented) and `nonce` (when
//! the server requires one; a missing or wrong nonce is
//! [`DpopError::UseNonce`], so the server answers `use_dpop_nonce`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::error::{ErrorCode, OAuthError};
use crate::Timestamp;

pub use crate::protocol::DPOP_PROOF_TYP as PROOF_TYP;
/// How far `iat` may be from `now`, in seconds, in the past or the future.
/// A proof's `jti` must be remembered at least this long after its `iat`
/// (see [`VerifiedProof::replay_expires_at`]).
pub const MAX_PROOF_AGE: i64 = 60;
/// The signing algorithms we accept, as `DPoP` challenges and discovery
/// (`dpop_signing_alg_values_supported`) list them. An Ed25519 key signs as
/// `EdDSA` (RFC 8037) or as `Ed25519`, RFC 9864's fully-specified name for
/// the same signature, which oauth4webapi (openid-client) writes.
pub const ALGS: [&str; 4] = ["ES256", "EdDSA", "Ed25519", "RS256"];
/// A longer proof is refused before it is parsed (an RS256 proof with a
/// 4096-bit key is under 2 KiB).
pub const MAX_PROOF_LEN: usize = 8192;
/// The longest `jti` we accept (and so store for replay detection).
pub const MAX_JTI_LEN: usize = 256;
/// RSA keys shorter than this are refused.
const MIN_RSA_BITS: usize = 2048;
/// JWK members that only a private (or symmetric) key has (RFC 7518 §6).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// What the proof must match: the request it came with.
#[derive(Clone, Copy, Debug)]
pub struct ProofCheck<'a> {
    /// The HTTP method, e.g. `POST` (compared exactly with `htm`).
    pub method: &'a str,
    /// The request's absolute URL as the client addressed it (query and
    /// fragment are ignored).
    pub url: &'a str,
    pub now: Timestamp,
    /// The access token presented with the proof, at a resource server:
    /// `ath` must be its hash. `None` at the token endpoint.
    pub access_token: Option<&'a str>,
    /// The nonce the server requires, if it requires one.
    pub nonce: Option<&'a str>,
}

/// A proof that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The RFC 7638 SHA-256 thumbprint of the proof's key, base64url: what
    /// `cnf.jkt` binds a token to.
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
}

impl VerifiedProof {
    /// Until when the proof's `jti` must be remembered to refuse a replay:
    /// past the last moment [`verify_proof`] accepts its `iat`.
    pub fn replay_expires_at(&self) -> Timestamp {
        Timestamp(self.iat).plus(MAX_PROOF_AGE + 1)
    }
}

/// Why a proof was refused. Every variant is `invalid_dpop_proof` but
/// [`DpopError::UseNonce`], which is `use_dpop_nonce` (see
/// [`DpopError::error_code`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    /// Not one compact JWS with a JSON header and claims.
    #[error("the DPoP proof is malformed: {0}")]
    Malformed(&'static str),
    /// `typ` is not `dpop+jwt`.
    #[error("the DPoP proof's typ must be dpop+jwt")]
    WrongType,
    /// `none`, a MAC (`HS256`...) or an algorithm we do not support.
    #[error("the DPoP proof's alg {0:?} is not accepted")]
    UnsupportedAlg(String),
    /// `jwk` missing, not a public key of a type that fits `alg`, or unusable.
    #[error("the DPoP proof's jwk is unusable: {0}")]
    BadKey(&'static str),
    /// `jwk` holds private key material.
    #[error("the DPoP proof's jwk holds a private key")]
    PrivateKey,
    #[error("the DPoP proof's signature does not verify")]
    BadSignature,
    /// A claim is missing or not of its type (`jti`, `htm`, `htu`, `iat`,
    /// or `ath` when an access token is presented).
    #[error("the DPoP proof's {0} claim is missing or malformed")]
    BadClaim(&'static str),
    #[error("the DPoP proof's htm does not match the request method")]
    WrongMethod,
    #[error("the DPoP proof's htu does not match the request URL")]
    WrongUrl,
    /// `iat` too old or too far in the future.
    #[error("the DPoP proof's iat is outside the accepted window")]
    IatOutOfWindow,
    /// `ath` is not the hash of the access token presented.
    #[error("the DPoP proof's ath does not match the access token")]
    WrongAth,
    /// The server requires a nonce and the proof has none, or another one.
    #[error("the DPoP proof must carry the nonce the server provided")]
    UseNonce,
}

impl DpopError {
    /// The RFC 9449 error code to answer with.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            DpopError::UseNonce => ErrorCode::UseDpopNonce,
            _ => ErrorCode::InvalidDpopProof,
        }
    }
}

impl From<DpopError> for OAuthError {
    fn from(e: DpopError) -> Self {
        OAuthError::new(e.error_code(), e.to_string())
    }
}

/// Checks `proof` against the request described by `check` (RFC 9449 §4.3).
/// Replay (`jti` seen before) is for the caller to check, with
/// [`VerifiedProof::jkt`], [`VerifiedProof::jti`] and
/// [`VerifiedProof::replay_expires_at`].
pub fn verify_proof(proof: &str, check: &ProofCheck<'_>) -> Result<VerifiedProof, DpopError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(DpopError::Malformed("too long"));
    }
    let mut parts = proof.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DpopError::Malformed("not a compact JWS"));
    };
    let header = json_object(header_b64, "header")?;
    let claims = json_object(claims_b64, "claims")?;

    // The header: typ, alg, jwk.
    if header.contains_key("crit") {
        // RFC 7515 §4.1.11: we understand no extension.
        return Err(DpopError::Malformed("crit is not supported"));
    }
    let typ = header.get("typ").and_then(Value::as_str);
    if !typ.is_some_and(|t| t.eq_ignore_ascii_case(PROOF_TYP)) {
        return Err(DpopError::WrongType);
    }
    let alg = match header.get("alg") {
        Some(Value::String(a)) => a.as_str(),
        Some(_) | None => return Err(DpopError::UnsupportedAlg(String::new())),
    };
    let algorithm = match alg {
        "ES256" => Algorithm::ES256,
        // RFC 9864: `Ed25519` is EdDSA with the Ed25519 curve only;
        // `EdDSA` with any other curve is refused by check_key_fits too.
        "EdDSA" | "Ed25519" => Algorithm::EdDSA,
        "RS256" => Algorithm::RS256,
        other => return Err(DpopError::UnsupportedAlg(other.to_owned())),
    };
    let jwk = header.get("jwk").ok_or(DpopError::BadKey("no jwk in the header"))?;
    let jwk_members = jwk.as_object().ok_or(DpopError::BadKey("not a JSON object"))?;
    if PRIVATE_MEMBERS.iter().any(|m| jwk_members.contains_key(*m)) {
        return Err(DpopError::PrivateKey);
    }
    check_key_fits(jwk_members, algorithm)?;
    let jkt = thumbprint(jwk)?;

    // The signature, with the key the proof carries.
    let parsed: Jwk = serde_json::from_value(jwk.clone()).map_err(|_| DpopError::BadKey("not a JWK"))?;
    let key = DecodingKey::from_jwk(&parsed).map_err(|_| DpopError::BadKey("not a usable public key"))?;
    let signed = &proof[..header_b64.len() + 1 + claims_b64.len()];
    match jsonwebtoken::crypto::verify(signature, signed.as_bytes(), &key, algorithm) {
        Ok(true) => {}
        Ok(false) | Err(_) => return Err(DpopError::BadSignature),
    }

    // The claims.
    let string_claim = |name: &'static str| match claims.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.as_str()),
        _ => Err(DpopError::BadClaim(name)),
    };
    let jti = string_claim("jti")?;
    if jti.len() > MAX_JTI_LEN {
        return Err(DpopError::BadClaim("jti"));
    }
    let htm = string_claim("htm")?;
    let htu = string_claim("htu")?;
    let iat = numeric_date(claims.get("iat")).ok_or(DpopError::BadClaim("iat"))?;
    if htm != check.method {
        return Err(DpopError::WrongMethod);
    }
    match (normalize_htu(htu), normalize_htu(check.url)) {
        (Some(claimed), Some(actual)) if claimed == actual => {}
        _ => return Err(DpopError::WrongUrl),
    }
    if iat < check.now.0.saturating_sub(MAX_PROOF_AGE) || iat > check.now.0.saturating_add(MAX_PROOF_AGE) {
        return Err(DpopError::IatOutOfWindow);
    }
    if let Some(token) = check.access_token {
        let ath = string_claim("ath")?;
        if ath != access_token_hash(token) {
            return Err(DpopError::WrongAth);
        }
    }
    if let Some(expected) = check.nonce
        && claims.get("nonce").and_then(Value::as_str) != Some(expected)
    {
        return Err(DpopError::UseNonce);
    }
    Ok(VerifiedProof {
        jkt,
        jti: jti.to_owned(),
        iat,
    })
}

/// The RFC 7638 thumbprint of a JWK: SHA-256 of its required members
/// (`crv`, `kty`, `x`, `y` for EC; `crv`, `kty`, `x` for OKP; `e`, `kty`,
/// `n` for RSA; `k`, `kty` for oct) in lexicographic order, without
/// whitespace; base64url without padding.
pub fn thumbprint(jwk: &Value) -> Result<String, DpopError> {
    let members = jwk.as_object().ok_or(DpopError::BadKey("not a JSON object"))?;
    let kty = members
        .get("kty")
        .and_then(Value::as_str)
        .ok_or(DpopError::BadKey("no kty"))?;
    let required: &[&str] = match kty {
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "RSA" => &["e", "kty", "n"],
        "oct" => &["k", "kty"],
        _ => return Err(DpopError::BadKey("unknown kty")),
    };
    let mut canonical = String::from("{");
    for (i, name) in required.iter().enumerate() {
        let value = members
            .get(*name)
            .and_then(Value::as_str)
            .ok_or(DpopError::BadKey("a required member is missing"))?;
        if i > 0 {
            canonical.push(',');
        }
        // JSON strings: serde_json escapes only what JSON requires.
        canonical.push_str(&Value::String((*name).to_owned()).to_string());
        canonical.push(':');
        canonical.push_str(&Value::String(value.to_owned()).to_string());
    }
    canonical.push('}');
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

/// Whether `value` has the form of a JWK SHA-256 thumbprint (what
/// [`thumbprint`] makes, and `dpop_jkt` carries, RFC 9449 §10): the
/// base64url encoding, without padding, of 32 bytes.
pub fn is_thumbprint(value: &str) -> bool {
    value.len() == 43 && URL_SAFE_NO_PAD.decode(value).is_ok_and(|bytes| bytes.len() == 32)
}

/// `ath` (RFC 9449 §4.2): base64url of the SHA-256 of the access token.
pub fn access_token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// The `nonce` claim of a proof, NOT verified: only for a server that
/// accepts several nonces (e.g. the current and the previous one) to pick
/// which to pass as [`ProofCheck::nonce`]; [`verify_proof`] then checks it.
pub fn unverified_nonce(proof: &str) -> Option<String> {
    if proof.len() > MAX_PROOF_LEN {
        return None;
    }
    let claims = proof.split('.').nth(1)?;
    json_object(claims, "claims")
        .ok()?
        .get("nonce")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// `htu` and the request URL, made comparable (RFC 9449 §4.3, RFC 3986
/// §6.2.2 and §6.2.3): an absolute http(s) URL with its query and fragment
/// removed, scheme and host lower case, no default port, an empty path as
/// `/`, dot segments removed, percent-encoded unreserved characters decoded
/// and the other escapes in upper case. `None` if it is not such a URL.
pub fn normalize_htu(url: &str) -> Option<String> {
    let mut url = url::Url::parse(url).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return None;
    }
    url.set_query(None);
    url.set_fragment(None);
    let path = normalize_percent_encoding(url.path());
    url.set_path(&path);
    Some(url.into())
}

/// Decodes escapes of unreserved characters (RFC 3986 §2.3) and writes the
/// others with upper-case hex digits (§6.2.2.1, §6.2.2.2).
fn normalize_percent_encoding(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(b) if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                out.push(char::from(b));
                i += 3;
            }
            Some(b) => {
                out.push_str(&format!("%{b:02X}"));
                i += 3;
            }
            None => {
                // The path is ASCII once parsed; keep any other byte as is.
                let ch = path[i..].chars().next().unwrap_or('\u{fffd}');
                out.push(ch);
                i += ch.len_utf8().max(1);
            }
        }
    }
    out
}

/// A base64url (no padding) JSON object.
fn json_object(b64: &str, what: &'static str) -> Result<Map<String, Value>, DpopError> {
    let bytes = URL_SAFE_NO_PAD.decode(b64).map_err(|_| DpopError::Malformed(what))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(DpopError::Malformed(what)),
    }
}

/// A NumericDate (RFC 7519 §2): seconds, possibly with a fraction (dropped).
fn numeric_date(value: Option<&Value>) -> Option<i64> {
    let n = value?.as_number()?;
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.is_finite() && f.abs() < 1e15)
            .map(|f| f.floor() as i64)
    })
}

/// The key type (and curve, and size) must be the one `alg` signs with.
fn check_key_fits(jwk: &Map<String, Value>, alg: Algorithm) -> Result<(), DpopError> {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    let decoded_len = |name: &str| {
        member(name)
            .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
            .map(|bytes| bytes.len())
    };
    let fits = match alg {
        Algorithm::ES256 => {
            member("kty") == Some("EC")
                && member("crv") == Some("P-256")
                && decoded_len("x") == Some(32)
                && decoded_len("y") == Some(32)
        }
        Algorithm::EdDSA => {
            member("kty") == Some("OKP") && member("crv") == Some("Ed25519") && decoded_len("x") == Some(32)
        }
        Algorithm::RS256 => {
            let modulus_bits = member("n").and_then(|n| URL_SAFE_NO_PAD.decode(n).ok()).map(|n| {
                let significant = n.iter().skip_while(|b| **b == 0).count();
                significant * 8
            });
            member("kty") == Some("RSA")
                && modulus_bits.is_some_and(|bits| bits >= MIN_RSA_BITS)
                && member("e").is_some()
        }
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        Err(DpopError::BadKey("the key type does not fit alg"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::EncodingKey;
    use p256::pkcs8::EncodePrivateKey;
    use serde_json::json;

    const URL: &str = "https://id.example.com/token";
    const NOW: Timestamp = Timestamp(1_700_000_000);

    struct Key {
        alg: Algorithm,
        encoding: EncodingKey,
        jwk: Value,
    }

    fn es256() -> Key {
        let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let point = key.verifying_key().to_encoded_point(false);
        let der = key.to_pkcs8_der().expect("pkcs8");
        Key {
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            jwk: json!({
                "kty": "EC",
                "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(point.x().expect("x")),
                "y": URL_SAFE_NO_PAD.encode(point.y().expect("y")),
            }),
        }
    }

    fn ed25519() -> Key {
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let der = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&key).expect("pkcs8");
        Key {
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            jwk: json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()),
            }),
        }
    }

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    /// A proof with exactly this header and these claims, signed by `key`.
    fn signed(key: &Key, header: &Value, claims: &Value) -> String {
        let message = format!("{}.{}", b64(header), b64(claims));
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key.encoding, key.alg).expect("sign");
        format!("{message}.{signature}")
    }

    fn header(key: &Key) -> Value {
        let alg = match key.alg {
            Algorithm::EdDSA => "EdDSA",
            _ => "ES256",
        };
        json!({ "typ": "dpop+jwt", "alg": alg, "jwk": key.jwk })
    }

    fn claims() -> Value {
        json!({ "jti": "e1j3V_bKic8-LAEB", "htm": "POST", "htu": URL, "iat": NOW.0 })
    }

    fn check() -> ProofCheck<'static> {
        ProofCheck {
            method: "POST",
            url: URL,
            now: NOW,
            access_token: None,
            nonce: None,
        }
    }

    /// A proof by `key` with `change` applied to the standard claims.
    fn proof_with(key: &Key, change: impl FnOnce(&mut Value)) -> String {
        let mut c = claims();
        change(&mut c);
        signed(key, &header(key), &c)
    }

    #[test]
    fn a_good_proof_passes_and_names_its_key() {
        for key in [es256(), ed25519()] {
            let proof = signed(&key, &header(&key), &claims());
            let verified = verify_proof(&proof, &check()).expect("a good proof");
            assert_eq!(verified.jkt, thumbprint(&key.jwk).expect("thumbprint"));
            assert_eq!(verified.jti, "e1j3V_bKic8-LAEB");
            assert_eq!(verified.iat, NOW.0);
            assert_eq!(verified.replay_expires_at(), NOW.plus(MAX_PROOF_AGE + 1));
        }
    }

    #[test]
    fn an_ed25519_key_signs_as_eddsa_or_ed25519() {
        // RFC 9864's fully-specified name, as oauth4webapi writes it, and
        // RFC 8037's polymorphic one: the same signature, the same key.
        let key = ed25519();
        let mut jkts = Vec::new();
        for alg in ["EdDSA", "Ed25519"] {
            let h = json!({ "typ": "dpop+jwt", "alg": alg, "jwk": key.jwk });
            let verified = verify_proof(&signed(&key, &h, &claims()), &check()).expect(alg);
            jkts.push(verified.jkt);
            assert!(ALGS.contains(&alg), "{alg} is advertised");
        }
        assert_eq!(jkts[0], jkts[1]);
        assert_eq!(jkts[0], thumbprint(&key.jwk).expect("thumbprint"));
        // Ed25519 names the curve: a P-256 key (or any other) does not fit.
        let ec = es256();
        let h = json!({ "typ": "dpop+jwt", "alg": "Ed25519", "jwk": ec.jwk });
        assert!(matches!(
            verify_proof(&signed(&ec, &h, &claims()), &check()),
            Err(DpopError::BadKey(_))
        ));
        let mut ed448 = key.jwk.clone();
        ed448["crv"] = json!("Ed448");
        let h = json!({ "typ": "dpop+jwt", "alg": "Ed25519", "jwk": ed448 });
        assert!(matches!(
            verify_proof(&signed(&key, &h, &claims()), &check()),
            Err(DpopError::BadKey(_))
        ));
        // Algorithm names are case-sensitive (RFC 7515 §4.1.1); Ed448 is not
        // supported.
        for alg in ["ed25519", "ED25519", "Ed448"] {
            let h = json!({ "typ": "dpop+jwt", "alg": alg, "jwk": key.jwk });
            assert_eq!(
                verify_proof(&signed(&key, &h, &claims()), &check()),
                Err(DpopError::UnsupportedAlg(alg.into())),
                "{alg}"
            );
        }
    }

    #[test]
    fn method_and_url_must_match() {
        let key = es256();
        let proof = signed(&key, &header(&key), &claims());
        let get = ProofCheck {
            method: "GET",
            ..check()
        };
        assert_eq!(verify_proof(&proof, &get), Err(DpopError::WrongMethod));
        let post_lower = ProofCheck {
            method: "post",
            ..check()
        };
        assert_eq!(verify_proof(&proof, &post_lower), Err(DpopError::WrongMethod));
        for other in [
            "https://id.example.com/userinfo",
            "https://other.example.com/token",
            "http://id.example.com/token",
            "https://id.example.com:8443/token",
            "https://id.example.com/token/",
            "not a url",
        ] {
            let c = ProofCheck { url: other, ..check() };
            assert_eq!(verify_proof(&proof, &c), Err(DpopError::WrongUrl), "{other}");
        }
        // Query, fragment, case of scheme and host, default port: ignored.
        for same in [
            "https://id.example.com/token?x=1",
            "https://id.example.com/token#f",
            "HTTPS://ID.Example.COM/token",
            "https://id.example.com:443/token",
            "https://id.example.com/a/../token",
            "https://id.example.com/%74oken",
        ] {
            let c = ProofCheck { url: same, ..check() };
            assert!(verify_proof(&proof, &c).is_ok(), "{same}");
        }
        // And on the proof's side too.
        let proof = proof_with(&key, |c| c["htu"] = json!("https://ID.example.com:443/token?q#f"));
        assert!(verify_proof(&proof, &check()).is_ok());
    }

    #[test]
    fn htu_normalisation() {
        assert_eq!(
            normalize_htu("HTTP://Example.COM:80").as_deref(),
            Some("http://example.com/")
        );
        assert_eq!(
            normalize_htu("https://example.com/a%2fb%7e?x").as_deref(),
            Some("https://example.com/a%2Fb~")
        );
        assert_eq!(normalize_htu("ftp://example.com/"), None);
        assert_eq!(normalize_htu("/token"), None);
    }

    #[test]
    fn iat_must_be_recent() {
        let key = es256();
        for (iat, ok) in [
            (NOW.0, true),
            (NOW.0 - MAX_PROOF_AGE, true),
            (NOW.0 + MAX_PROOF_AGE, true),
            (NOW.0 - MAX_PROOF_AGE - 1, false),
            (NOW.0 + MAX_PROOF_AGE + 1, false),
            (0, false),
        ] {
            let proof = proof_with(&key, |c| c["iat"] = json!(iat));
            let got = verify_proof(&proof, &check());
            if ok {
                assert!(got.is_ok(), "{iat}: {got:?}");
            } else {
                assert_eq!(got, Err(DpopError::IatOutOfWindow), "{iat}");
            }
        }
        let proof = proof_with(&key, |c| c["iat"] = json!("now"));
        assert_eq!(verify_proof(&proof, &check()), Err(DpopError::BadClaim("iat")));
    }

    #[test]
    fn required_claims() {
        let key = es256();
        for name in ["jti", "htm", "htu", "iat"] {
            let proof = proof_with(&key, |c| {
                c.as_object_mut().expect("object").remove(name);
            });
            assert_eq!(verify_proof(&proof, &check()), Err(DpopError::BadClaim(name)), "{name}");
        }
        let proof = proof_with(&key, |c| c["jti"] = json!(""));
        assert_eq!(verify_proof(&proof, &check()), Err(DpopError::BadClaim("jti")));
        let proof = proof_with(&key, |c| c["jti"] = json!("j".repeat(MAX_JTI_LEN + 1)));
        assert_eq!(verify_proof(&proof, &check()), Err(DpopError::BadClaim("jti")));
    }

    #[test]
    fn ath_binds_the_access_token() {
        let key = es256();
        let token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
        let with_token = ProofCheck {
            access_token: Some(token),
            ..check()
        };
        let proof = proof_with(&key, |c| c["ath"] = json!(access_token_hash(token)));
        assert!(verify_proof(&proof, &with_token).is_ok());
        let proof = proof_with(&key, |c| c["ath"] = json!(access_token_hash("another token")));
        assert_eq!(verify_proof(&proof, &with_token), Err(DpopError::WrongAth));
        let proof = signed(&key, &header(&key), &claims());
        assert_eq!(verify_proof(&proof, &with_token), Err(DpopError::BadClaim("ath")));
        // RFC 9449 §7.1's example.
        assert_eq!(
            access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    #[test]
    fn nonce_when_required() {
        let key = es256();
        let with_nonce = ProofCheck {
            nonce: Some("eyJ7S_zG.eyJH0-Z.HX4w-7v"),
            ..check()
        };
        let proof = signed(&key, &header(&key), &claims());
        let refused = verify_proof(&proof, &with_nonce);
        assert_eq!(refused, Err(DpopError::UseNonce));
        assert_eq!(DpopError::UseNonce.error_code(), ErrorCode::UseDpopNonce);
        assert_eq!(DpopError::WrongUrl.error_code(), ErrorCode::InvalidDpopProof);
        let proof = proof_with(&key, |c| c["nonce"] = json!("another"));
        assert_eq!(verify_proof(&proof, &with_nonce), Err(DpopError::UseNonce));
        assert_eq!(unverified_nonce(&proof).as_deref(), Some("another"));
        let proof = proof_with(&key, |c| c["nonce"] = json!("eyJ7S_zG.eyJH0-Z.HX4w-7v"));
        assert!(verify_proof(&proof, &with_nonce).is_ok());
        // A nonce nobody asked for is no reason to refuse.
        assert!(verify_proof(&proof, &check()).is_ok());
    }

    #[test]
    fn only_asymmetric_algorithms() {
        let key = es256();
        // alg none: no signature at all.
        let none = format!(
            "{}.{}.",
            b64(&json!({ "typ": "dpop+jwt", "alg": "none", "jwk": key.jwk })),
            b64(&claims())
        );
        assert_eq!(
            verify_proof(&none, &check()),
            Err(DpopError::UnsupportedAlg("none".into()))
        );
        // HS256 with a key the proof itself carries.
        let secret = Key {
            alg: Algorithm::HS256,
            encoding: EncodingKey::from_secret(b"shared secret"),
            jwk: json!({ "kty": "oct", "k": URL_SAFE_NO_PAD.encode(b"shared secret") }),
        };
        let hs = signed(
            &secret,
            &json!({ "typ": "dpop+jwt", "alg": "HS256", "jwk": secret.jwk }),
            &claims(),
        );
        assert_eq!(
            verify_proof(&hs, &check()),
            Err(DpopError::UnsupportedAlg("HS256".into()))
        );
        // An alg that does not fit the key.
        let mismatched = signed(
            &key,
            &json!({ "typ": "dpop+jwt", "alg": "EdDSA", "jwk": key.jwk }),
            &claims(),
        );
        assert!(matches!(verify_proof(&mismatched, &check()), Err(DpopError::BadKey(_))));
    }

    #[test]
    fn header_checks() {
        let key = es256();
        let mut h = header(&key);
        h["typ"] = json!("JWT");
        assert_eq!(
            verify_proof(&signed(&key, &h, &claims()), &check()),
            Err(DpopError::WrongType)
        );
        let mut h = header(&key);
        h.as_object_mut().expect("object").remove("jwk");
        assert!(matches!(
            verify_proof(&signed(&key, &h, &claims()), &check()),
            Err(DpopError::BadKey(_))
        ));
        let mut h = header(&key);
        h["crit"] = json!(["exp"]);
        assert!(matches!(
            verify_proof(&signed(&key, &h, &claims()), &check()),
            Err(DpopError::Malformed(_))
        ));
        for junk in ["", "a.b", "a.b.c.d", "!!!.e30.", "e30.W10.AAAA"] {
            assert!(
                matches!(verify_proof(junk, &check()), Err(DpopError::Malformed(_))),
                "{junk}"
            );
        }
        assert_eq!(verify_proof("e30.e30.AAAA", &check()), Err(DpopError::WrongType));
        assert_eq!(
            verify_proof(&"a".repeat(MAX_PROOF_LEN + 1), &check()),
            Err(DpopError::Malformed("too long"))
        );
    }

    #[test]
    fn a_private_key_in_the_header_is_refused() {
        let key = es256();
        let mut h = header(&key);
        h["jwk"]["d"] = json!("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI");
        assert_eq!(
            verify_proof(&signed(&key, &h, &claims()), &check()),
            Err(DpopError::PrivateKey)
        );
    }

    #[test]
    fn a_tampered_proof_is_refused() {
        let key = es256();
        let proof = signed(&key, &header(&key), &claims());
        // Other claims under the same signature.
        let mut parts: Vec<String> = proof.split('.').map(str::to_owned).collect();
        let mut c = claims();
        c["htm"] = json!("GET");
        parts[1] = b64(&c);
        let get = ProofCheck {
            method: "GET",
            ..check()
        };
        assert_eq!(verify_proof(&parts.join("."), &get), Err(DpopError::BadSignature));
        // Another key in the header.
        let other = es256();
        let swapped = format!("{}.{}", b64(&header(&other)), proof.split_once('.').expect("dot").1);
        assert_eq!(verify_proof(&swapped, &check()), Err(DpopError::BadSignature));
        // A flipped bit in the signature.
        let (message, signature) = proof.rsplit_once('.').expect("dot");
        let mut sig = URL_SAFE_NO_PAD.decode(signature).expect("b64");
        sig[5] ^= 1;
        let flipped = format!("{message}.{}", URL_SAFE_NO_PAD.encode(&sig));
        assert_eq!(verify_proof(&flipped, &check()), Err(DpopError::BadSignature));
    }

    #[test]
    fn thumbprint_of_rfc_7638_example() {
        // RFC 7638 §3.1.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29",
        });
        assert_eq!(
            thumbprint(&jwk).as_deref(),
            Ok("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
        assert!(thumbprint(&json!({ "kty": "EC", "crv": "P-256" })).is_err());
        assert!(thumbprint(&json!({ "kty": "XYZ" })).is_err());
        assert!(thumbprint(&json!("not an object")).is_err());
    }
}
