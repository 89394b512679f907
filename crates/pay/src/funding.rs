//! Where wallet money comes from. A funding source says whether it will
//! bring in an amount; the ledger then moves it from the source's account
//! to the wallet. The built-in [`TestFunding`] credits test money.

use async_trait::async_trait;
use gatehouse_core::pay::ledger::TEST_FUNDING_SOURCE;

#[derive(Debug, thiserror::Error)]
#[error("the funding source refused: {0}")]
pub struct FundingRefused(pub String);

#[async_trait]
pub trait FundingSource: Send + Sync + 'static {
    /// The source's name (its ledger account's owner).
    fn name(&self) -> &str;
    /// Brings in `amount` for `sub` (e.g. charges a card); `Ok` means the
    /// money is there to credit.
    async fn charge(&self, sub: &str, amount: i64, currency: &str) -> Result<(), FundingRefused>;
}

/// Test money: always accepted.
#[derive(Clone, Copy, Debug, Default)]
pub struct TestFunding;

#[async_trait]
impl FundingSource for TestFunding {
    fn name(&self) -> &str {
        TEST_FUNDING_SOURCE
    }

    async fn charge(&self, _sub: &str, _amount: i64, _currency: &str) -> Result<(), FundingRefused> {
        Ok(())
    }
}
