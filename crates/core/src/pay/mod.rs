//! The payments service's rules, with no I/O: contract terms and their
//! canonical hash ([`contract`]), merchants' fee rules and their rounding ([`fee`]), the double-entry ledger's movements
//! ([`ledger`]), the purchase state machine ([`purchase`]), the purchase PIN
//! policy ([`pin`]), merchant notifications ([`notification`]) and the
//! versions of the documents a buyer agrees to ([`terms`]).

pub mod contract;
pub mod fee;
pub mod ledger;
pub mod notification;
pub mod pin;
pub mod purchase;
pub mod terms;

pub use contract::{ContractTerms, MerchantTerms, TermsError, canonical_json, contract_hash};
pub use fee::{Fee, FeePayer, FeeRule};
pub use ledger::{AccountKind, LedgerAccount, Movement, MovementKind};
pub use purchase::{PurchaseState, TransitionError};
