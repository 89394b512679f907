//! The versions of the terms of service and the privacy notice a buyer
//! agrees to before a first purchase. Raising a version asks everyone again.

/// The current terms of service.
pub const TERMS_OF_SERVICE_VERSION: &str = "2026-11-01";
/// The current privacy notice.
pub const PRIVACY_NOTICE_VERSION: &str = "2026-11-01";

/// Whether an agreement recorded with these versions covers the current
/// documents.
pub fn is_current(terms_version: Option<&str>, privacy_version: Option<&str>) -> bool {
    terms_version == Some(TERMS_OF_SERVICE_VERSION) && privacy_version == Some(PRIVACY_NOTICE_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_current_versions_count() {
        assert!(is_current(Some(TERMS_OF_SERVICE_VERSION), Some(PRIVACY_NOTICE_VERSION)));
        assert!(!is_current(Some("2020-01-01"), Some(PRIVACY_NOTICE_VERSION)));
        assert!(!is_current(Some(TERMS_OF_SERVICE_VERSION), None));
        assert!(!is_current(None, None));
    }
}
