//! The shop's fulfillment URLs and contract terms: a fulfillment URL names
//! one purchase (product, order, amount, currency, time) and carries an
//! HMAC-SHA256 of those parameters under the shop's own secret, so the shop
//! can rebuild the contract's terms, and so its hash, from the URL alone,
//! with no database and for any visitor (docs/payments.md, "The merchant
//! side"). The terms and their hash follow the payments rules in
//! `gatehouse_core::pay`, the same code the payments service runs.

use gatehouse_core::pay::{ContractTerms, MerchantTerms, TermsError};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::catalog::{self, Product};

type HmacSha256 = Hmac<Sha256>;

/// The key fulfillment URLs are signed with (kept as a keyed HMAC, cloned
/// for each use).
#[derive(Clone)]
pub struct FulfillmentKey(HmacSha256);

impl std::fmt::Debug for FulfillmentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FulfillmentKey([redacted])")
    }
}

impl FulfillmentKey {
    /// Derived from the client secret (HMAC-SHA256 keyed with the secret,
    /// over a fixed label): no extra configuration, the same key across
    /// restarts and on every instance of the shop, so a fulfillment URL
    /// keeps working for as long as the shop's registration lasts. A new
    /// client secret invalidates the old URLs, which is what rotating a
    /// secret is for.
    pub fn derive(client_secret: &str) -> Result<Self, hmac::digest::InvalidLength> {
        let mut mac = HmacSha256::new_from_slice(client_secret.as_bytes())?;
        mac.update(b"gatehouse demo-site fulfillment v1");
        let key = mac.finalize().into_bytes();
        Ok(FulfillmentKey(HmacSha256::new_from_slice(&key)?))
    }

    fn mac(&self) -> HmacSha256 {
        self.0.clone()
    }
}

/// One purchase, as its fulfillment URL names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub product: &'static Product,
    /// `o_` and 32 hex digits.
    pub order_id: String,
    /// Minor units (cents).
    pub amount: i64,
    pub currency: String,
    /// When the offer was made (Unix seconds).
    pub t: i64,
}

/// What a fulfillment URL query was refused for (the shop answers 404).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FulfillError {
    #[error("a parameter is missing, repeated or malformed")]
    Malformed,
    #[error("unknown product")]
    UnknownProduct,
    #[error("the signature does not match")]
    BadSignature,
}

impl Order {
    /// A fresh order for `product` at its catalog price, made at `now`.
    pub fn new(product: &'static Product, now: i64) -> Self {
        let mut id = [0u8; 16];
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut id);
        Order {
            product,
            order_id: format!("o_{}", hex::encode(id)),
            amount: product.price,
            currency: catalog::CURRENCY.to_owned(),
            t: now,
        }
    }

    /// The signed parameters, in their fixed order (what the HMAC covers).
    fn signed_part(&self) -> String {
        format!(
            "product={}&order={}&amount={}&currency={}&t={}",
            self.product.id, self.order_id, self.amount, self.currency, self.t
        )
    }

    fn signature(&self, key: &FulfillmentKey) -> String {
        let mut mac = key.mac();
        mac.update(self.signed_part().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// `{shop}/fulfill?product=..&order=..&amount=..&currency=..&t=..&sig=..`.
    /// Every value is checked to need no percent-encoding, so this string
    /// is the same whether built here or rebuilt from a request.
    pub fn fulfillment_url(&self, shop: &str, key: &FulfillmentKey) -> String {
        format!("{shop}/fulfill?{}&sig={}", self.signed_part(), self.signature(key))
    }

    pub fn offer_url(&self, shop: &str) -> String {
        offer_url(shop, self.product)
    }

    /// Reads a fulfillment query (`payment` aside) and checks its
    /// signature. Each parameter must appear once, with nothing else but
    /// `payment`.
    pub fn from_query(query: &str, key: &FulfillmentKey) -> Result<Order, FulfillError> {
        let mut fields: [Option<String>; 6] = Default::default();
        const NAMES: [&str; 6] = ["product", "order", "amount", "currency", "t", "sig"];
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if name == "payment" {
                continue;
            }
            let i = NAMES.iter().position(|n| *n == name).ok_or(FulfillError::Malformed)?;
            if fields[i].replace(value.into_owned()).is_some() {
                return Err(FulfillError::Malformed);
            }
        }
        let [
            Some(product),
            Some(order_id),
            Some(amount),
            Some(currency),
            Some(t),
            Some(sig),
        ] = fields
        else {
            return Err(FulfillError::Malformed);
        };
        let valid_order = order_id
            .strip_prefix("o_")
            .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let valid_currency = currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase());
        let amount = canonical_int(&amount).ok_or(FulfillError::Malformed)?;
        let t = canonical_int(&t).ok_or(FulfillError::Malformed)?;
        if !valid_order || !valid_currency || amount <= 0 {
            return Err(FulfillError::Malformed);
        }
        let product = catalog::product(&product).ok_or(FulfillError::UnknownProduct)?;
        let order = Order {
            product,
            order_id,
            amount,
            currency,
            t,
        };
        let sig = hex::decode(sig).map_err(|_| FulfillError::BadSignature)?;
        let mut mac = key.mac();
        mac.update(order.signed_part().as_bytes());
        mac.verify_slice(&sig).map_err(|_| FulfillError::BadSignature)?;
        Ok(order)
    }

    /// The contract's terms as the merchant posts them (without `merchant`
    /// and `v`, which the payments service adds).
    pub fn merchant_terms(&self, shop: &str, key: &FulfillmentKey) -> MerchantTerms {
        MerchantTerms {
            order_id: self.order_id.clone(),
            product: self.product.id.to_owned(),
            summary: self.product.summary.to_owned(),
            amount: self.amount,
            currency: self.currency.clone(),
            fulfillment_url: self.fulfillment_url(shop, key),
            offer_url: self.offer_url(shop),
        }
    }

    /// The full terms: the merchant's plus `merchant` and `v`, by the
    /// payments rules (`gatehouse_core::pay`).
    pub fn terms(&self, shop: &str, key: &FulfillmentKey, merchant: &str) -> Result<ContractTerms, TermsError> {
        self.merchant_terms(shop, key).into_contract(merchant)
    }

    /// The contract hash of [`Order::terms`]: what the payments service
    /// computes for the same terms.
    pub fn contract_hash(&self, shop: &str, key: &FulfillmentKey, merchant: &str) -> Result<String, TermsError> {
        self.terms(shop, key, merchant)?.hash()
    }
}

pub fn offer_url(shop: &str, product: &Product) -> String {
    format!("{shop}/offer/{}", product.id)
}

/// A non-negative integer written the one way (no sign, no leading zero).
fn canonical_int(s: &str) -> Option<i64> {
    let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOP: &str = "http://127.0.0.1:8082";

    fn key() -> FulfillmentKey {
        FulfillmentKey::derive("the shop's client secret").unwrap()
    }

    fn query_of(url: &str) -> &str {
        url.split_once('?').map(|(_, q)| q).unwrap_or_default()
    }

    #[test]
    fn a_fulfillment_url_rebuilds_the_same_terms() {
        let product = catalog::product("ebook-rust").unwrap();
        let order = Order::new(product, 1_790_000_000);
        let url = order.fulfillment_url(SHOP, &key());
        assert!(url.starts_with("http://127.0.0.1:8082/fulfill?product=ebook-rust&order=o_"));
        let again = Order::from_query(query_of(&url), &key()).unwrap();
        assert_eq!(again, order);
        assert_eq!(again.fulfillment_url(SHOP, &key()), url);
        assert_eq!(
            again.contract_hash(SHOP, &key(), "shop").unwrap(),
            order.contract_hash(SHOP, &key(), "shop").unwrap()
        );
        // A proof appended does not change what the URL names.
        let with_proof = format!("{}&payment=abc.def.ghi", query_of(&url));
        assert_eq!(Order::from_query(&with_proof, &key()).unwrap(), order);
        // Two offers of the same product are two contracts.
        let other = Order::new(product, 1_790_000_000);
        assert_ne!(
            other.contract_hash(SHOP, &key(), "shop").unwrap(),
            order.contract_hash(SHOP, &key(), "shop").unwrap()
        );
    }

    #[test]
    fn a_tampered_fulfillment_url_is_refused() {
        let product = catalog::product("ebook-rust").unwrap();
        let order = Order::new(product, 1_790_000_000);
        let url = order.fulfillment_url(SHOP, &key());
        let query = query_of(&url).to_owned();
        let cheaper = query.replace(&format!("amount={}", order.amount), "amount=1");
        assert_ne!(cheaper, query);
        assert_eq!(Order::from_query(&cheaper, &key()), Err(FulfillError::BadSignature));
        let leading_zero = query.replace("amount=", "amount=0");
        assert_eq!(Order::from_query(&leading_zero, &key()), Err(FulfillError::Malformed));
        let other_product = query.replace("product=ebook-rust", "product=album-night");
        assert_eq!(
            Order::from_query(&other_product, &key()),
            Err(FulfillError::BadSignature)
        );
        let later = query.replace("t=1790000000", "t=1790000001");
        assert_eq!(Order::from_query(&later, &key()), Err(FulfillError::BadSignature));
        let mut flipped = query.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == '0' { '1' } else { '0' });
        assert_eq!(Order::from_query(&flipped, &key()), Err(FulfillError::BadSignature));
        // Another shop's key.
        assert_eq!(
            Order::from_query(&query, &FulfillmentKey::derive("another secret").unwrap()),
            Err(FulfillError::BadSignature)
        );
        // Missing, repeated and unknown parameters.
        let no_sig = query.split("&sig=").next().unwrap();
        assert_eq!(Order::from_query(no_sig, &key()), Err(FulfillError::Malformed));
        assert_eq!(
            Order::from_query(&format!("{query}&t=1"), &key()),
            Err(FulfillError::Malformed)
        );
        assert_eq!(
            Order::from_query(&format!("{query}&discount=1"), &key()),
            Err(FulfillError::Malformed)
        );
        assert_eq!(
            Order::from_query(&query.replace("ebook-rust", "nothing"), &key()),
            Err(FulfillError::UnknownProduct)
        );
        assert_eq!(Order::from_query("", &key()), Err(FulfillError::Malformed));
        assert_eq!(
            Order::from_query(&query.replace("&sig=", "&sig=zz"), &key()),
            Err(FulfillError::BadSignature)
        );
    }

    #[test]
    fn the_terms_name_the_merchant_and_version() {
        let product = catalog::product("album-night").unwrap();
        let order = Order::new(product, 1);
        let terms = order.terms(SHOP, &key(), "shop").unwrap();
        assert_eq!(terms.merchant, "shop");
        assert_eq!(terms.v, 1);
        assert_eq!(terms.amount, product.price);
        assert_eq!(terms.currency, "EUR");
        assert_eq!(terms.offer_url, "http://127.0.0.1:8082/offer/album-night");
        assert_eq!(terms.fulfillment_url, order.fulfillment_url(SHOP, &key()));
        assert!(gatehouse_core::pay::contract::is_hash(
            &order.contract_hash(SHOP, &key(), "shop").unwrap()
        ));
    }
}
