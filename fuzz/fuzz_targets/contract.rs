//! Fuzzes what a merchant posts: any JSON made canonical reads back as the
//! same value and is its own canonical form (RFC 8785 for JSON without
//! floats), and terms that pass validation keep their hash through a
//! round trip of their canonical form.
#![no_main]

use gatehouse_core::pay::contract::{ContractTerms, MerchantTerms, canonical_json, is_hash};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<Value>(data)
        && let Ok(canonical) = canonical_json(&value)
    {
        let again: Value = serde_json::from_str(&canonical).expect("canonical JSON parses");
        assert_eq!(again, value);
        assert_eq!(canonical_json(&again).expect("still canonical"), canonical);
    }
    if let Ok(terms) = serde_json::from_slice::<MerchantTerms>(data)
        && let Ok(contract) = terms.into_contract("merchant")
    {
        let canonical = contract.canonical().expect("valid terms are canonical");
        let hash = contract.hash().expect("valid terms hash");
        assert!(is_hash(&hash));
        let back = ContractTerms::from_canonical(&canonical).expect("reads back");
        assert_eq!(back, contract);
        assert_eq!(back.hash().expect("hash"), hash);
    }
});
