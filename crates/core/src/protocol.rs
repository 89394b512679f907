//! Protocol constants both ends of a wire share, defined once: the IdP
//! writes them and the relier library checks them (JWT `typ` values,
//! media types, security event type URIs, token type URNs).

/// The `typ` of an access token (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// The long form of [`ACCESS_TOKEN_TYP`], which RFC 9068 §4 also accepts.
pub const ACCESS_TOKEN_MEDIA_TYPE: &str = "application/at+jwt";
/// The `typ` of a DPoP proof (RFC 9449 §4.2).
pub const DPOP_PROOF_TYP: &str = "dpop+jwt";
/// The `typ` of a back-channel logout token (Back-Channel Logout 1.0 §2.4).
pub const LOGOUT_TOKEN_TYP: &str = "logout+jwt";
/// The event member of a logout token's `events` claim (Back-Channel
/// Logout 1.0 §2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The `typ` of a Security Event Token (RFC 8417 §2.3).
pub const SET_TYP: &str = "secevent+jwt";
/// The content type a SET is pushed with (RFC 8935 §2).
pub const SET_CONTENT_TYPE: &str = "application/secevent+jwt";
/// The content type of a form body: a logout token is POSTed as one
/// (Back-Channel Logout 1.0 §2.5).
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// RFC 8693 §3: an access token, as `subject_token_type`,
/// `requested_token_type` and `issued_token_type`.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// RFC 8693 §3: a JWT.
pub const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// RISC: the account was disabled (banned or suspended).
pub const ACCOUNT_DISABLED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
/// RISC: the account was enabled again.
pub const ACCOUNT_ENABLED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-enabled";
/// RISC: the account was deleted.
pub const ACCOUNT_PURGED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-purged";
/// RISC: the account's identifier (its email) changed.
pub const IDENTIFIER_CHANGED: &str = "https://schemas.openid.net/secevent/risc/event-type/identifier-changed";
/// CAEP: a credential (the password) changed.
pub const CREDENTIAL_CHANGE: &str = "https://schemas.openid.net/secevent/caep/event-type/credential-change";
/// CAEP: sessions were revoked.
pub const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
