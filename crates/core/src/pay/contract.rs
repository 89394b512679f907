//! Contracts: the terms a merchant offers one buyer, made canonical and
//! hashed. The terms are the merchant's own fields plus `merchant` (its
//! client id) and `v` (the format's version), nothing the payments service
//! makes up, so a merchant can rebuild them from its fulfillment URL alone.
//!
//! Canonical form: JSON with keys sorted, no whitespace, integers only (RFC
//! 8785 for this subset). The contract hash is the base64url (no padding)
//! SHA-256 of the canonical form.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::fee::{Fee, FeeRule, Split, split};

/// The version of the terms format (`v`).
pub const TERMS_FORMAT: i64 = 1;
/// The largest amount, in minor units (one million in major units).
pub const MAX_AMOUNT: i64 = 100_000_000;
/// Longest `order_id` and `product`.
pub const MAX_ID_LEN: usize = 100;
/// Longest `summary`.
pub const MAX_SUMMARY_LEN: usize = 300;
/// Longest URL.
pub const MAX_URL_LEN: usize = 2048;

/// What a merchant posts: its terms for one purchase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantTerms {
    pub order_id: String,
    pub product: String,
    pub summary: String,
    /// In minor units (cents).
    pub amount: i64,
    /// ISO 4217: three capital letters.
    pub currency: String,
    pub fulfillment_url: String,
    pub offer_url: String,
}

/// The terms of a contract: the merchant's plus `merchant` and `v`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractTerms {
    pub merchant: String,
    pub order_id: String,
    pub product: String,
    pub summary: String,
    pub amount: i64,
    pub currency: String,
    pub fulfillment_url: String,
    pub offer_url: String,
    pub v: i64,
    /// The fee of the merchant's rule when the contract was made, if any
    /// (absent for a merchant without fees, so such a merchant's terms are
    /// exactly its own fields plus `merchant` and `v`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<Fee>,
}

/// Why terms are refused (400 `invalid_request`, with this text).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TermsError {
    #[error("amount must be a positive number of minor units, at most {MAX_AMOUNT}")]
    Amount,
    #[error("currency must be three capital letters (ISO 4217)")]
    Currency,
    #[error("{0} must be an absolute http(s) URL of at most {MAX_URL_LEN} characters")]
    Url(&'static str),
    #[error("{0} must be 1 to {1} printable characters")]
    Text(&'static str, usize),
    #[error("the terms are not canonical JSON: {0}")]
    NotCanonical(&'static str),
}

fn check_text(name: &'static str, value: &str, max: usize) -> Result<(), TermsError> {
    let len = value.chars().count();
    if len == 0 || len > max || value.chars().any(char::is_control) {
        return Err(TermsError::Text(name, max));
    }
    Ok(())
}

fn check_url(name: &'static str, value: &str) -> Result<(), TermsError> {
    if value.len() > MAX_URL_LEN {
        return Err(TermsError::Url(name));
    }
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        _ => Err(TermsError::Url(name)),
    }
}

impl MerchantTerms {
    /// Checks the fields (amounts, currency, URLs, text lengths).
    pub fn validate(&self) -> Result<(), TermsError> {
        if self.amount <= 0 || self.amount > MAX_AMOUNT {
            return Err(TermsError::Amount);
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(TermsError::Currency);
        }
        check_text("order_id", &self.order_id, MAX_ID_LEN)?;
        check_text("product", &self.product, MAX_ID_LEN)?;
        check_text("summary", &self.summary, MAX_SUMMARY_LEN)?;
        check_url("fulfillment_url", &self.fulfillment_url)?;
        check_url("offer_url", &self.offer_url)?;
        Ok(())
    }

    /// The contract's terms for `merchant`, after [`MerchantTerms::validate`].
    pub fn into_contract(self, merchant: &str) -> Result<ContractTerms, TermsError> {
        self.validate()?;
        Ok(ContractTerms {
            merchant: merchant.to_owned(),
            order_id: self.order_id,
            product: self.product,
            summary: self.summary,
            amount: self.amount,
            currency: self.currency,
            fulfillment_url: self.fulfillment_url,
            offer_url: self.offer_url,
            v: TERMS_FORMAT,
            fee: None,
        })
    }
}

impl ContractTerms {
    /// The terms with the fee `rule` makes of their amount.
    pub fn with_fee(mut self, rule: &FeeRule) -> Self {
        self.fee = rule.fee(self.amount);
        self
    }

    /// What paying these terms moves (price, fee, total).
    pub fn split(&self) -> Split {
        split(self.amount, self.fee)
    }

    /// The canonical JSON text.
    pub fn canonical(&self) -> Result<String, TermsError> {
        let value = serde_json::to_value(self).map_err(|_| TermsError::NotCanonical("unserializable"))?;
        canonical_json(&value)
    }

    /// The contract hash: base64url SHA-256 of the canonical form.
    pub fn hash(&self) -> Result<String, TermsError> {
        Ok(contract_hash(&self.canonical()?))
    }

    /// Reads terms back from their stored canonical form.
    pub fn from_canonical(text: &str) -> Result<Self, TermsError> {
        serde_json::from_str(text).map_err(|_| TermsError::NotCanonical("unreadable stored terms"))
    }
}

/// RFC 8785 for JSON without floats: object keys sorted (by UTF-16 code
/// units, as the RFC says), no whitespace, strings escaped as
/// `serde_json` does (the same escapes as ECMAScript's `JSON.stringify`).
pub fn canonical_json(value: &Value) -> Result<String, TermsError> {
    let mut out = String::new();
    write_canonical(value, &mut out)?;
    Ok(out)
}

fn write_canonical(value: &Value, out: &mut String) -> Result<(), TermsError> {
    match value {
        Value::Null | Value::Bool(_) | Value::String(_) => out.push_str(&value.to_string()),
        Value::Number(n) => {
            if !(n.is_i64() || n.is_u64()) {
                return Err(TermsError::NotCanonical("only integers are allowed"));
            }
            out.push_str(&n.to_string());
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out)?;
                }
            }
            out.push('}');
        }
    }
    Ok(())
}

/// base64url (no padding) of the SHA-256 of `canonical`.
pub fn contract_hash(canonical: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Whether `s` has the shape of a contract hash (43 base64url characters).
pub fn is_hash(s: &str) -> bool {
    s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn terms() -> MerchantTerms {
        MerchantTerms {
            order_id: "o_1".into(),
            product: "ebook-rust".into(),
            summary: "The Rust book (EPUB)".into(),
            amount: 499,
            currency: "EUR".into(),
            fulfillment_url: "http://127.0.0.1:8082/fulfill?product=ebook-rust&order=o_1".into(),
            offer_url: "http://127.0.0.1:8082/offer/ebook-rust".into(),
        }
    }

    #[test]
    fn canonical_form_sorts_keys_and_has_no_whitespace() {
        let c = terms().into_contract("shop").expect("valid");
        assert_eq!(
            c.canonical().expect("canonical"),
            r#"{"amount":499,"currency":"EUR","fulfillment_url":"http://127.0.0.1:8082/fulfill?product=ebook-rust&order=o_1","merchant":"shop","offer_url":"http://127.0.0.1:8082/offer/ebook-rust","order_id":"o_1","product":"ebook-rust","summary":"The Rust book (EPUB)","v":1}"#
        );
        let hash = c.hash().expect("hash");
        assert!(is_hash(&hash));
        assert_eq!(hash, contract_hash(&c.canonical().expect("canonical")));
        // Reading it back gives the same terms.
        assert_eq!(
            ContractTerms::from_canonical(&c.canonical().expect("c")).expect("read"),
            c
        );
    }

    #[test]
    fn the_terms_state_a_fee_only_when_there_is_one() {
        use crate::pay::fee::FeePayer;
        let plain = terms().into_contract("shop").expect("valid");
        // No rule, or a rule that comes to zero: the same terms and hash.
        assert_eq!(plain.clone().with_fee(&FeeRule::default()), plain);
        let tiny = FeeRule::new(0, 1, FeePayer::Buyer).expect("rule");
        assert_eq!(plain.clone().with_fee(&tiny), plain);
        let rule = FeeRule::new(30, 250, FeePayer::Buyer).expect("rule");
        let with_fee = plain.clone().with_fee(&rule);
        let canonical = with_fee.canonical().expect("canonical");
        // 2.5 % of 499 is 12.475: 12, plus 30.
        assert!(
            canonical.contains(r#""fee":{"amount":42,"payer":"buyer"}"#),
            "{canonical}"
        );
        assert_ne!(with_fee.hash().expect("hash"), plain.hash().expect("hash"));
        assert_eq!(ContractTerms::from_canonical(&canonical).expect("read"), with_fee);
        assert_eq!(with_fee.split().buyer_pays, 541);
    }

    #[test]
    fn canonical_json_rules() {
        assert_eq!(
            canonical_json(&json!({"b": [1, {"z": null, "a": true}], "a": "é\n"})).expect("ok"),
            "{\"a\":\"é\\n\",\"b\":[1,{\"a\":true,\"z\":null}]}"
        );
        assert!(canonical_json(&json!({"x": 1.5})).is_err());
        // The RFC 8785 sort is by UTF-16 code units.
        assert_eq!(
            canonical_json(&json!({"\u{e9}": 1, "\u{1f600}": 2})).expect("ok"),
            "{\"\u{e9}\":1,\"\u{1f600}\":2}"
        );
    }

    #[test]
    fn known_hash() {
        // SHA-256 of "{}" in base64url.
        assert_eq!(contract_hash("{}"), "RBNvo1WzZ4oRRq0W9-hknpT7T8If536DEMBg9hyq_4o");
    }

    #[test]
    fn bad_terms_are_refused() {
        type Change = fn(&mut MerchantTerms);
        let cases: Vec<(Change, TermsError)> = vec![
            (|t| t.amount = 0, TermsError::Amount),
            (|t| t.amount = -5, TermsError::Amount),
            (|t| t.amount = MAX_AMOUNT + 1, TermsError::Amount),
            (|t| t.currency = "eur".into(), TermsError::Currency),
            (|t| t.currency = "EURO".into(), TermsError::Currency),
            (
                |t| t.fulfillment_url = "javascript:alert(1)".into(),
                TermsError::Url("fulfillment_url"),
            ),
            (|t| t.offer_url = "/relative".into(), TermsError::Url("offer_url")),
            (|t| t.order_id = String::new(), TermsError::Text("order_id", MAX_ID_LEN)),
            (
                |t| t.summary = "x".repeat(MAX_SUMMARY_LEN + 1),
                TermsError::Text("summary", MAX_SUMMARY_LEN),
            ),
            (
                |t| t.product = "a\u{0}b".into(),
                TermsError::Text("product", MAX_ID_LEN),
            ),
        ];
        for (change, expected) in cases {
            let mut t = terms();
            change(&mut t);
            assert_eq!(t.into_contract("shop"), Err(expected));
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let r: Result<MerchantTerms, _> = serde_json::from_value(json!({
            "order_id": "o", "product": "p", "summary": "s", "amount": 1, "currency": "EUR",
            "fulfillment_url": "http://a/", "offer_url": "http://a/", "discount": 100
        }));
        assert!(r.is_err());
    }
}
