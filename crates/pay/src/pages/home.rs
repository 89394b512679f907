//! `GET /`: the payments page (wallet balances, "add test money", the
//! purchase history, "reset PIN"), and `POST /fund`.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gatehouse_core::Timestamp;
use gatehouse_core::pay::fee::split;
use gatehouse_core::pay::ledger::MAX_FUNDING;
use serde::Deserialize;

use super::login::require_login;
use super::parse_form;
use super::render::{HistoryRow, HomePage, money, render};
use crate::web::{PageError, PayState, see_other};

#[derive(Deserialize)]
pub struct HomeQuery {
    notice: Option<String>,
}

/// Fixed notices a redirect may ask for: a query never puts its own words
/// on the page.
fn notice(key: Option<&str>) -> Option<&'static str> {
    Some(match key? {
        "funded" => "Test money added to your wallet.",
        "pin_changed" => "Your purchase PIN is changed.",
        _ => return None,
    })
}

pub async fn home(State(state): State<PayState>, headers: HeaderMap, Query(q): Query<HomeQuery>) -> Response {
    let result = async {
        let Some((digest, session)) = state.session(&headers).await? else {
            return require_login(&state, "/").await;
        };
        let balances = state
            .store
            .balances(&session.sub)
            .await?
            .into_iter()
            .map(|(currency, amount)| money(amount, &currency))
            .collect();
        // Merchants by name, as the purchase page names them.
        let names: std::collections::HashMap<String, String> = state
            .store
            .merchants()
            .await?
            .into_iter()
            .map(|m| (m.client_id, m.name))
            .collect();
        let purchases = state
            .store
            .purchases(Some(&session.sub), 100)
            .await?
            .into_iter()
            .map(|p| HistoryRow {
                when: gatehouse_core::time::format_utc(Timestamp(p.paid_at)),
                merchant: names.get(&p.merchant).cloned().unwrap_or(p.merchant),
                // What left the wallet: the price and a fee the buyer paid.
                amount: money(split(p.amount, p.fee).buyer_pays, &p.currency),
                state: p.state.as_str(),
            })
            .collect();
        let csrf = state.csrf_token(&digest);
        Ok::<_, PageError>(render(
            StatusCode::OK,
            &HomePage {
                csrf: &csrf,
                notice: notice(q.notice.as_deref()),
                balances,
                purchases,
            },
        ))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
struct FundForm {
    csrf: String,
    amount: String,
    currency: String,
}

pub async fn fund(State(state): State<PayState>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let form: FundForm = parse_form(&body)?;
        let Some((digest, session)) = state.session(&headers).await? else {
            return require_login(&state, "/").await;
        };
        if !state.csrf_ok(&digest, &form.csrf) {
            return Err(PageError::csrf());
        }
        let bad = || {
            PageError::page(
                StatusCode::BAD_REQUEST,
                "Cannot add money",
                format!(
                    "The amount must be a whole number of minor units from 1 to {MAX_FUNDING}, the currency three capital letters."
                ),
            )
        };
        let amount: i64 = form.amount.trim().parse().map_err(|_| bad())?;
        if let Some(r) = crate::standing::gate(&state, &session.sub, session.vouched_at, "fund", "/").await? {
            return Ok(r);
        }
        let currency = form.currency.trim();
        let movement = gatehouse_core::pay::Movement::fund(state.funding.name(), &session.sub, amount, currency);
        if movement.is_err() {
            return Err(bad());
        }
        state
            .funding
            .charge(&session.sub, amount, currency)
            .await
            .map_err(|e| PageError::page(StatusCode::PAYMENT_REQUIRED, "Cannot add money", e.to_string()))?;
        state
            .store
            .credit_wallet(state.funding.name(), &session.sub, amount, currency, Timestamp::now())
            .await?;
        Ok(see_other("/?notice=funded"))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
