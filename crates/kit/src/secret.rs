//! A service's secret at rest: 32 bytes from the configuration or from a
//! file in the data directory, and the keys derived from it for one purpose
//! each.
//!
//! One file format: the standard base64 of the 32 bytes and a newline,
//! created with mode 0600 and synced before it is used. The payments
//! service's older files and values, hex of the 32 bytes, are read as they
//! are (64 hex digits cannot be mistaken for base64 of 32 bytes, which is
//! 43 or 44 characters), and never rewritten.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use gatehouse_core::Secret;
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Why a secret could not be had. The messages never show the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The value is malformed.
    #[error("{0}")]
    Malformed(String),
    #[error("secret key file {}: {source}", path.display())]
    File { path: PathBuf, source: std::io::Error },
}

/// The 32 secret bytes of one service instance. Every instance that shares
/// a database must have the same one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceSecret(Secret<[u8; 32]>);

/// Standard or URL-safe base64, padded or not.
const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How long the hex form is: two digits a byte.
const HEX_LEN: usize = 64;

impl InstanceSecret {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Secret::new(bytes))
    }

    /// 32 random bytes.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    /// Parses either form: 64 hex digits, or base64 (standard or URL-safe,
    /// padding optional) of exactly 32 bytes. Surrounding white space is
    /// ignored. The error never includes the value.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        if text.len() == HEX_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            let bytes = Zeroizing::new(hex::decode(text).map_err(|_| malformed("is not hex"))?);
            let array: [u8; 32] = bytes.as_slice().try_into().map_err(|_| malformed("is not hex"))?;
            return Ok(Self::from_bytes(array));
        }
        let bytes = Zeroizing::new(
            LENIENT_STANDARD
                .decode(text)
                .or_else(|_| LENIENT_URL_SAFE.decode(text))
                .map_err(|_| malformed("is not base64 (generate one with `openssl rand -base64 32`)"))?,
        );
        let array: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            SecretError::Malformed(format!(
                "must be the base64 of 32 bytes, not {} (generate one with `openssl rand -base64 32`)",
                bytes.len()
            ))
        })?;
        Ok(Self::from_bytes(array))
    }

    /// Standard base64, as the file holds it.
    pub fn to_base64(&self) -> Secret<String> {
        Secret::new(STANDARD.encode(self.0.expose()))
    }

    /// The configured value if there is one, else the file `file_name` in
    /// `data_dir` (the directory and the file are created if missing: see
    /// [`InstanceSecret::load_or_create`]).
    pub fn load(configured: Option<&str>, data_dir: &Path, file_name: &str) -> Result<Self, SecretError> {
        if let Some(text) = configured {
            return Self::parse(text);
        }
        std::fs::create_dir_all(data_dir).map_err(|source| SecretError::File {
            path: data_dir.to_owned(),
            source,
        })?;
        Self::load_or_create(&data_dir.join(file_name))
    }

    /// Reads the secret from `path`, or creates the file with a new random
    /// secret (mode 0600 on unix, `create_new`, synced) if there is none.
    /// If another process creates it first, theirs is used. A file others
    /// may read is used, with a warning.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let file_error = |source| SecretError::File {
            path: path.to_owned(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => return Self::read(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_error(e)),
        }
        let secret = Self::generate();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                let text = Zeroizing::new(format!("{}\n", secret.to_base64().expose()));
                file.write_all(text.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(file_error)?;
                tracing::info!(path = %path.display(), "created a new instance secret key");
                Ok(secret)
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).map_err(file_error)?;
                Self::read(path, &text)
            }
            Err(e) => Err(file_error(e)),
        }
    }

    fn read(path: &Path, text: &str) -> Result<Self, SecretError> {
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the secret key file is readable by others; chmod 600 it");
            }
        }
        Self::parse(text).map_err(|e| match e {
            SecretError::Malformed(message) => SecretError::Malformed(format!("{}: {message}", path.display())),
            other => other,
        })
    }

    /// A key for one purpose, derived from the secret: SHA-256 of the
    /// purpose, a zero byte and the secret. Stored data depends on these
    /// values: the rule never changes.
    pub fn derive_key(&self, purpose: &str) -> Secret<[u8; 32]> {
        let mut hash = Sha256::new();
        hash.update(purpose.as_bytes());
        hash.update([0u8]);
        hash.update(self.0.expose());
        Secret::new(hash.finalize().into())
    }
}

fn malformed(why: &str) -> SecretError {
    SecretError::Malformed(why.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[test]
    fn both_forms_parse_and_errors_never_show_the_value() {
        let secret = InstanceSecret::generate();
        let text = secret.to_base64();
        assert_eq!(InstanceSecret::parse(text.expose()).expect("parse"), secret);
        assert_eq!(
            InstanceSecret::parse(&format!("  {}\n", text.expose())).expect("trimmed"),
            secret
        );
        let url_safe = URL_SAFE_NO_PAD.encode([0xfbu8; 32]);
        assert_eq!(
            InstanceSecret::parse(&url_safe).expect("url-safe"),
            InstanceSecret::from_bytes([0xfb; 32])
        );
        assert_eq!(
            InstanceSecret::parse(&"ab".repeat(32)).expect("hex"),
            InstanceSecret::from_bytes([0xab; 32])
        );
        assert_eq!(
            InstanceSecret::parse(&"AB".repeat(32)).expect("upper-case hex"),
            InstanceSecret::from_bytes([0xab; 32])
        );
        let short = STANDARD.encode([7u8; 16]);
        let err = InstanceSecret::parse(&short).expect_err("16 bytes");
        assert!(
            err.to_string().contains("32 bytes") && !err.to_string().contains(&short),
            "{err}"
        );
        for bad in ["not base64!", "abcd", &"zz".repeat(32), &"ab".repeat(31)] {
            let err = InstanceSecret::parse(bad).expect_err(bad);
            assert!(!err.to_string().contains(bad), "{err}");
        }
        assert_eq!(format!("{secret:?}"), "InstanceSecret([redacted])");
    }

    #[test]
    fn the_file_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("secret.key");
        let first = InstanceSecret::load_or_create(&path).expect("create");
        let second = InstanceSecret::load_or_create(&path).expect("read");
        assert_eq!(first, second);
        let text = std::fs::read_to_string(&path).expect("text");
        assert_eq!(text, format!("{}\n", first.to_base64().expose()), "the one format");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "short").expect("write");
        let err = InstanceSecret::load_or_create(&path).expect_err("malformed");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    }

    #[test]
    fn an_old_hex_file_is_read_as_it_is() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("pay-secret.key");
        std::fs::write(&path, format!("{}\n", hex::encode([0x5au8; 32]))).expect("write");
        let secret = InstanceSecret::load(None, dir.path(), "pay-secret.key").expect("read");
        assert_eq!(secret, InstanceSecret::from_bytes([0x5a; 32]));
        let text = std::fs::read_to_string(&path).expect("text");
        assert_eq!(text, format!("{}\n", hex::encode([0x5au8; 32])), "left as it was");
    }

    #[test]
    fn a_configured_value_wins_and_no_file_is_made() {
        let dir = tempfile::tempdir().expect("dir");
        let configured = hex::encode([1u8; 32]);
        let secret = InstanceSecret::load(Some(&configured), &dir.path().join("data"), "x.key").expect("load");
        assert_eq!(secret, InstanceSecret::from_bytes([1; 32]));
        assert!(!dir.path().join("data").exists());
        let made = InstanceSecret::load(None, &dir.path().join("data"), "x.key").expect("create");
        assert_eq!(
            made,
            InstanceSecret::load(None, &dir.path().join("data"), "x.key").expect("read")
        );
    }

    /// Stored keys were sealed with these: they must never change.
    #[test]
    fn derivation_is_stable() {
        let secret = InstanceSecret::from_bytes([7; 32]);
        assert_eq!(
            hex::encode(secret.derive_key("gatehouse signing keys v1").expose()),
            "b4ca0716bd32f091bef7e43b723dc9cb993fa1f21d6ad0c1dd93a7b271b08232"
        );
        assert_eq!(
            hex::encode(secret.derive_key("gatehouse pay signing key v1").expose()),
            "e279ae2f4c40c2ad82092a50f754fcb85354c576105932549ff2c8e451bd8b15"
        );
    }
}
