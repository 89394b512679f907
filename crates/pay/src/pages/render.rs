//! The page templates (askama, checked at compile time) and turning them
//! into responses.

use askama::Template;
use axum::http::StatusCode;
use axum::response::Response;
use gatehouse_core::pay::{ContractTerms, Fee, FeePayer};

pub const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#222}\
header{margin-bottom:1.5rem}.brand{font-weight:bold;text-decoration:none;color:#225}\
.error{color:#a00}.notice{color:#060}dt{font-weight:bold}table{border-collapse:collapse}\
td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}";

/// Renders a template with a status (the kit's: a template that fails to
/// render is a 500, logged).
pub use gatehouse_kit::page::render;

pub fn error_page(status: StatusCode, heading: &str, text: &str) -> Response {
    render(status, &ErrorPage { heading, text })
}

pub fn message_page(heading: &str, text: &str, link: Option<(&str, &str)>) -> Response {
    render(StatusCode::OK, &MessagePage { heading, text, link })
}

/// An amount in minor units as text: `4.99 EUR`.
pub fn money(amount: i64, currency: &str) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    let a = amount.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", a / 100, a % 100)
}

/// The fee line of a purchase page: the amount and who pays it.
pub fn fee_line(fee: Option<Fee>, currency: &str) -> Option<String> {
    fee.map(|f| {
        let who = match f.payer {
            FeePayer::Buyer => "paid by you, on top of the price",
            FeePayer::Merchant => "paid by the merchant, out of the price",
        };
        format!("{} ({who})", money(f.amount, currency))
    })
}

/// The price as the first-purchase page states it: the total, and the fee
/// when the buyer pays one.
pub fn price_with_fee(terms: &ContractTerms) -> String {
    let split = terms.split();
    let total = money(split.buyer_pays, &terms.currency);
    match terms.fee {
        Some(Fee {
            amount,
            payer: FeePayer::Buyer,
        }) => format!(
            "{total} ({} plus a fee of {})",
            money(terms.amount, &terms.currency),
            money(amount, &terms.currency)
        ),
        _ => total,
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub heading: &'a str,
    pub text: &'a str,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    pub heading: &'a str,
    pub text: &'a str,
    pub link: Option<(&'a str, &'a str)>,
}

#[derive(Template)]
#[template(path = "setup.html")]
pub struct SetupPage<'a> {
    pub hash: &'a str,
    /// The query that keeps a framed or popup display (`""` for a page).
    pub display: &'a str,
    pub csrf: &'a str,
    pub merchant: &'a str,
    pub summary: &'a str,
    pub price: String,
    pub need_agreement: bool,
    pub need_pin: bool,
    pub terms_version: &'a str,
    pub privacy_version: &'a str,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "pay.html")]
pub struct PayPage<'a> {
    pub hash: &'a str,
    /// The query that keeps a framed or popup display (`""` for a page).
    pub display: &'a str,
    pub csrf: &'a str,
    pub merchant: &'a str,
    pub summary: &'a str,
    pub order_id: &'a str,
    pub price: String,
    /// The fee and who pays it, when the contract states one.
    pub fee: Option<String>,
    /// What leaves the buyer's wallet.
    pub total: String,
    pub balance: String,
    pub error: Option<&'a str>,
}

pub struct HistoryRow {
    pub when: String,
    pub merchant: String,
    pub amount: String,
    pub state: &'static str,
}

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage<'a> {
    pub csrf: &'a str,
    pub notice: Option<&'a str>,
    pub balances: Vec<String>,
    pub purchases: Vec<HistoryRow>,
}

#[derive(Template)]
#[template(path = "pin_new.html")]
pub struct PinNewPage<'a> {
    pub csrf: &'a str,
    /// Where the browser goes once the PIN is set (`/`: the payments page).
    pub next: &'a str,
    pub error: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_shown_in_major_units() {
        assert_eq!(money(499, "EUR"), "4.99 EUR");
        assert_eq!(money(100, "USD"), "1.00 USD");
        assert_eq!(money(5, "EUR"), "0.05 EUR");
        assert_eq!(money(-250, "EUR"), "-2.50 EUR");
    }
}
