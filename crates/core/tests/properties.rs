//! Property tests for the core rules: the parsers never panic and accept
//! exactly what they should, and the time-based rules (codes, throttling,
//! sessions) and the password policy hold at every boundary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gatehouse_core::code::{CodeError, CodePurpose, MAX_ATTEMPTS, OneTimeCode, normalise_code};
use gatehouse_core::email::{EmailError, MAX_EMAIL_LEN};
use gatehouse_core::password::{self, MAX_LEN, MIN_LEN, PasswordRejected, check_policy};
use gatehouse_core::session::{
    ABSOLUTE_TIMEOUT, AuthMethod, IDLE_TIMEOUT, Session, SessionState, TOUCH_INTERVAL, clip_user_agent,
};
use gatehouse_core::throttle::{Decision, PER_ACCOUNT, PER_ADDRESS, Policy, Window, combine, minutes};
use gatehouse_core::time::DAY;
use gatehouse_core::{AccountId, Email, OpaqueToken, Profile, ProfileInput, Secret, Timestamp, TokenDigest};
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

/// Realistic instants: 1970 to 2100. The rules do plain `i64` arithmetic on
/// timestamps, so instants near `i64::MAX` are out of scope.
fn instant() -> impl Strategy<Value = Timestamp> {
    (0i64..=4_102_444_800).prop_map(Timestamp)
}

/// Characters an address might plausibly contain, including non-ASCII
/// letters whose lowercase form is longer in UTF-8 than the letter itself
/// ('İ' is 2 bytes, its lowercase "i\u{307}" is 3; 'Ⱥ' is 2 bytes, 'ⱥ' is 3)
/// or shorter (the Kelvin sign 'K', 3 bytes, lowercases to 'k').
fn address_char(ascii_only: bool) -> BoxedStrategy<char> {
    let ascii = prop_oneof![
        8 => prop::char::range('a', 'z'),
        4 => prop::char::range('A', 'Z'),
        2 => prop::char::range('0', '9'),
        2 => prop::sample::select(vec!['.', '+', '-', '_', '%', '\'', '!']),
    ];
    if ascii_only {
        ascii.boxed()
    } else {
        prop_oneof![
            12 => ascii,
            1 => prop::sample::select(vec!['é', 'É', 'ß', 'Σ', 'İ', 'Ⱥ', '\u{212A}', 'Ж', '中']),
            1 => any::<char>(),
        ]
        .boxed()
    }
}

fn address_part(ascii_only: bool, max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(address_char(ascii_only), 0..=max).prop_map(|cs| cs.into_iter().collect())
}

/// Strings shaped like addresses (local part, '@', domain, optional
/// surrounding whitespace), long enough to reach the length limits.
fn address_like(ascii_only: bool) -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["", " ", "\t", "  \n"]),
        address_part(ascii_only, 70),
        prop::sample::select(vec!["@", "@", "@", "", "@@"]),
        address_part(ascii_only, 200),
        prop::sample::select(vec!["", ".com", ".example.org", "."]),
        prop::sample::select(vec!["", " ", "\r\n"]),
    )
        .prop_map(|(lead, local, at, domain, tld, trail)| format!("{lead}{local}{at}{domain}{tld}{trail}"))
}

fn any_input() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), address_like(false), address_like(true)]
}

/// The base64url alphabet (no padding), which `OpaqueToken::generate` uses.
fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn b64url_string(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".to_vec()),
        len,
    )
    .prop_map(|bytes| String::from_utf8(bytes).unwrap())
}

fn decision() -> impl Strategy<Value = Decision> {
    prop_oneof![
        Just(Decision::Allowed),
        (1i64..=DAY).prop_map(|retry_after_secs| Decision::Throttled { retry_after_secs }),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        Just(PER_ACCOUNT),
        Just(PER_ADDRESS),
        (1u32..=100, 1i64..=DAY).prop_map(|(max_failures, window_secs)| Policy {
            max_failures,
            window_secs
        }),
    ]
}

/// A whitespace run: ASCII and non-ASCII (`char::is_whitespace`) alike.
fn whitespace() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![' ', '\t', '\n', '\r', '\u{a0}', '\u{2003}', '\u{3000}']),
        0..3,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

fn session_at(last_seen_at: Timestamp, auth_time: Timestamp, needs_reauth: bool) -> Session {
    Session {
        id_digest: TokenDigest::of("x"),
        handle: "h".into(),
        account_id: AccountId("a".into()),
        created_at: auth_time,
        auth_time,
        amr: vec![AuthMethod::Pwd],
        last_seen_at,
        user_agent: String::new(),
        ip: String::new(),
        needs_reauth,
    }
}

fn issue(now: Timestamp) -> (OneTimeCode, String) {
    let issued = OneTimeCode::issue(
        CodePurpose::ResetPassword,
        AccountId("a".into()),
        Email::parse("a@example.com").unwrap(),
        now,
    );
    (issued.record, issued.code.expose().clone())
}

// ---------------------------------------------------------------------------
// Email
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Never panics; what it accepts is lowercase, has no surrounding
    /// whitespace, and has exactly one '@' between a non-empty local part and
    /// a non-empty domain.
    #[test]
    fn email_parse_is_total_and_normalises(input in any_input()) {
        match Email::parse(&input) {
            Ok(email) => {
                let s = email.as_str();
                prop_assert_eq!(s, s.to_lowercase());
                prop_assert_eq!(s, s.trim());
                prop_assert!(!s.is_empty());
                let (local, domain) = s.rsplit_once('@').expect("accepted address has an '@'");
                prop_assert!(!local.is_empty() && !local.contains('@'));
                prop_assert!(!domain.is_empty());
                prop_assert!(!s.chars().any(char::is_control));
                // The input, trimmed and lowercased, is what we keep.
                prop_assert_eq!(s, input.trim().to_lowercase());
            }
            Err(EmailError::Empty) => prop_assert!(input.trim().is_empty()),
            // The limit applies to what would be stored, after lowercasing.
            Err(EmailError::TooLong) => {
                prop_assert!(input.trim().to_lowercase().len() > MAX_EMAIL_LEN)
            }
            Err(EmailError::Malformed) => {}
        }
    }

    /// The stored address is within the length limits, and parsing it again
    /// gives the same address (idempotent), as does the serde round trip the
    /// store and session use. Non-ASCII input matters here: some uppercase
    /// letters grow when lowercased ("İ", 2 bytes, becomes "i\u{307}", 3).
    #[test]
    fn email_is_bounded_and_idempotent(input in any_input()) {
        if let Ok(email) = Email::parse(&input) {
            let s = email.as_str();
            prop_assert!(s.len() <= MAX_EMAIL_LEN, "{} bytes", s.len());
            prop_assert!(s.rsplit_once('@').unwrap().0.len() <= 64);
            prop_assert_eq!(Email::parse(s), Ok(email.clone()));
            let json = serde_json::to_string(&email).unwrap();
            prop_assert_eq!(serde_json::from_str::<Email>(&json).unwrap(), email);
        }
    }

    /// Case and surrounding whitespace never decide whether an ASCII address
    /// is accepted, nor which account it names.
    #[test]
    fn email_ignores_ascii_case_and_padding(input in address_like(true), pad in whitespace()) {
        let upper = format!("{pad}{}{pad}", input.to_ascii_uppercase());
        prop_assert_eq!(Email::parse(&input), Email::parse(&upper));
    }
}

/// Lengths are checked after lowercasing: these once got through as
/// addresses the parser itself then refused, or longer than 254 bytes.
#[test]
fn email_limits_apply_after_lowercasing() {
    // A 64-byte local part that lowercases to 96 bytes.
    let input = format!("{}@a", "\u{130}".repeat(32));
    assert_eq!(Email::parse(&input), Err(EmailError::Malformed));
    // 254 bytes that lowercase to 286.
    let input = format!("{}@{}", "\u{130}".repeat(32), "a".repeat(189));
    assert_eq!(input.len(), MAX_EMAIL_LEN);
    assert_eq!(Email::parse(&input), Err(EmailError::TooLong));
    // Found by the `email` fuzz target: 'Ⱦ' is 2 bytes, 'ⱦ' is 3.
    let input = format!("{}{}\u{23e}baa@example.com", "a".repeat(51), "b".repeat(8));
    assert_eq!(Email::parse(&input), Err(EmailError::Malformed));
    // Letters that shrink are fine: the Kelvin sign (3 bytes) becomes 'k'.
    let input = format!("{}@a", "\u{212a}".repeat(30));
    assert_eq!(
        Email::parse(&input).map(String::from),
        Ok(format!("{}@a", "k".repeat(30)))
    );
}

// ---------------------------------------------------------------------------
// Opaque tokens
// ---------------------------------------------------------------------------

proptest! {
    /// `parse` accepts exactly non-empty base64url strings of at most 128
    /// bytes, and keeps them unchanged.
    #[test]
    fn token_parse_accepts_exactly_base64url_up_to_128(
        input in prop_oneof![any::<String>(), b64url_string(0..=140)],
    ) {
        let expected = !input.is_empty() && input.len() <= 128 && input.bytes().all(is_b64url);
        let parsed = OpaqueToken::parse(&input);
        prop_assert_eq!(parsed.is_some(), expected, "{:?}", input);
        if let Some(token) = parsed {
            prop_assert_eq!(token.expose(), input.as_str());
            prop_assert!(token.ct_eq(&input));
            prop_assert_eq!(token.digest(), TokenDigest::of(&input));
        }
    }

    /// One character outside the alphabet, anywhere, is enough to refuse.
    #[test]
    fn token_with_a_foreign_character_is_refused(
        valid in b64url_string(0..=100),
        bad in any::<char>().prop_filter("outside base64url", |c| !c.is_ascii() || !is_b64url(*c as u8)),
        at in any::<prop::sample::Index>(),
    ) {
        let mut chars: Vec<char> = valid.chars().collect();
        chars.insert(at.index(chars.len() + 1), bad);
        let input: String = chars.into_iter().collect();
        prop_assert!(OpaqueToken::parse(&input).is_none(), "{:?}", input);
    }

    /// Anything longer than 128 bytes is refused, however clean.
    #[test]
    fn token_longer_than_128_is_refused(input in b64url_string(129..=1000)) {
        prop_assert!(OpaqueToken::parse(&input).is_none());
    }

    /// Comparison is equality, whatever the other side is.
    #[test]
    fn token_ct_eq_is_equality(token in b64url_string(1..=128), other in prop_oneof![any::<String>(), b64url_string(0..=128)]) {
        let token = OpaqueToken::parse(&token).unwrap();
        prop_assert_eq!(token.ct_eq(&other), token.expose() == other);
        prop_assert!(token.ct_eq(token.expose()));
    }

    /// The digest is 64 lowercase hex characters and differs between tokens.
    #[test]
    fn token_digest_is_lowercase_hex(a in b64url_string(1..=128), b in b64url_string(1..=128)) {
        let da = TokenDigest::of(&a);
        prop_assert_eq!(da.as_str().len(), 64);
        prop_assert!(da.as_str().bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        prop_assert_eq!(a == b, da == TokenDigest::of(&b));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every token we generate parses back to itself (and is 43 characters:
    /// 32 random bytes in unpadded base64url).
    #[test]
    fn generated_tokens_parse(_n in 0u8..1) {
        let token = OpaqueToken::generate();
        prop_assert_eq!(token.expose().len(), 43);
        let parsed = OpaqueToken::parse(token.expose()).expect("own token parses");
        prop_assert_eq!(parsed.digest(), token.digest());
        prop_assert_eq!(parsed, token);
    }
}

// ---------------------------------------------------------------------------
// One-time codes
// ---------------------------------------------------------------------------

proptest! {
    /// Whatever `normalise_code` accepts is six ASCII digits: the input with
    /// its whitespace removed.
    #[test]
    fn normalise_code_only_yields_six_digits(input in prop_oneof![
        any::<String>(),
        "[0-9 \t]{0,10}",
        "[0-9\u{0660}-\u{0669}\u{ff10}-\u{ff19} ]{5,8}",
    ]) {
        let stripped: String = input.chars().filter(|c| !c.is_whitespace()).collect();
        let expected = stripped.len() == 6 && stripped.bytes().all(|b| b.is_ascii_digit());
        match normalise_code(&input) {
            Some(code) => {
                prop_assert!(expected, "{:?} accepted", input);
                prop_assert_eq!(code.len(), 6);
                prop_assert!(code.bytes().all(|b| b.is_ascii_digit()));
                prop_assert_eq!(code, stripped);
            }
            None => prop_assert!(!expected, "{:?} refused", input),
        }
    }

    /// Six digits with any whitespace around or between them are accepted.
    #[test]
    fn normalise_code_ignores_whitespace(
        digits in "[0-9]{6}",
        gaps in prop::collection::vec(whitespace(), 7),
    ) {
        let mut input = gaps[0].clone();
        for (d, gap) in digits.chars().zip(&gaps[1..]) {
            input.push(d);
            input.push_str(gap);
        }
        prop_assert_eq!(normalise_code(&input), Some(digits));
    }

    /// Fewer or more than six digits never pass.
    #[test]
    fn normalise_code_refuses_other_lengths(digits in "[0-9]{0,5}|[0-9]{7,12}") {
        prop_assert_eq!(normalise_code(&digits), None);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Before it expires and while attempts remain, a code accepts exactly the
    /// issued code (whitespace aside) and nothing else.
    #[test]
    fn check_code_accepts_only_the_issued_code(
        now in instant(),
        later in 0i64..CodePurpose::ResetPassword.lifetime(),
        attempts in 0..MAX_ATTEMPTS,
        guess in prop_oneof!["[0-9]{6}", "[0-9 ]{5,9}", any::<String>()],
        pad in whitespace(),
    ) {
        let (mut record, code) = issue(now);
        record.attempts = attempts;
        let at = now.plus(later);
        prop_assert_eq!(record.check_code(&code, at), Ok(()));
        let padded = format!("{pad}{}{pad}{}{pad}", &code[..3], &code[3..]);
        prop_assert_eq!(record.check_code(&padded, at), Ok(()));
        let expected = if normalise_code(&guess).as_deref() == Some(code.as_str()) {
            Ok(())
        } else {
            Err(CodeError::Wrong)
        };
        prop_assert_eq!(record.check_code(&guess, at), expected);
        // Every other six-digit code is wrong.
        let other = format!("{:06}", (code.parse::<u32>().unwrap() + 1 + attempts) % 1_000_000);
        prop_assert_eq!(record.check_code(&other, at), Err(CodeError::Wrong));
    }

    /// After `MAX_ATTEMPTS` recorded attempts, nothing is accepted, not even
    /// the issued code; the same once expired or used.
    #[test]
    fn check_code_refuses_everything_when_spent(
        now in instant(),
        attempts in MAX_ATTEMPTS..=u32::MAX,
        after_expiry in 0i64..=30 * DAY,
        guess in prop_oneof!["[0-9]{6}", any::<String>()],
    ) {
        let (mut record, code) = issue(now);
        record.attempts = attempts;
        prop_assert_eq!(record.check_code(&code, now), Err(CodeError::TooManyAttempts));
        prop_assert_eq!(record.check_code(&guess, now), Err(CodeError::TooManyAttempts));

        let (mut record, code) = issue(now);
        let expired = record.expires_at.plus(after_expiry);
        prop_assert_eq!(record.check_code(&code, expired), Err(CodeError::Expired));
        prop_assert_eq!(record.check_code(&guess, expired), Err(CodeError::Expired));

        record.used_at = Some(now);
        prop_assert_eq!(record.check_code(&code, now), Err(CodeError::AlreadyUsed));
        prop_assert_eq!(record.check_code(&guess, now), Err(CodeError::AlreadyUsed));
    }
}

// ---------------------------------------------------------------------------
// Throttling
// ---------------------------------------------------------------------------

proptest! {
    /// Fewer failures than the limit never throttle.
    #[test]
    fn throttle_allows_under_the_limit(
        policy in policy(),
        started_at in instant(),
        elapsed in -DAY..=2 * DAY,
        failures in any::<u32>(),
    ) {
        let failures = failures % policy.max_failures;
        let window = Some(Window { started_at, failures });
        prop_assert_eq!(policy.decide(window, started_at.plus(elapsed)), Decision::Allowed);
        prop_assert_eq!(policy.decide(None, started_at.plus(elapsed)), Decision::Allowed);
    }

    /// Once the window has passed, any number of failures is forgotten.
    #[test]
    fn throttle_allows_once_the_window_has_passed(
        policy in policy(),
        started_at in instant(),
        past in 0i64..=30 * DAY,
        failures in any::<u32>(),
    ) {
        let now = started_at.plus(policy.window_secs).plus(past);
        prop_assert_eq!(policy.decide(Some(Window { started_at, failures }), now), Decision::Allowed);
    }

    /// Within the window, reaching the limit throttles, and the wait is
    /// between one second and the window's length, ending when the window
    /// does.
    #[test]
    fn throttle_waits_at_most_the_window(
        policy in policy(),
        started_at in instant(),
        elapsed in 0i64..=2 * DAY,
        failures in any::<u32>(),
    ) {
        let now = started_at.plus(elapsed);
        let over = failures >= policy.max_failures && elapsed < policy.window_secs;
        match policy.decide(Some(Window { started_at, failures }), now) {
            Decision::Allowed => prop_assert!(!over),
            Decision::Throttled { retry_after_secs } => {
                prop_assert!(over);
                prop_assert!((1..=policy.window_secs).contains(&retry_after_secs), "{}", retry_after_secs);
                prop_assert_eq!(now.plus(retry_after_secs), started_at.plus(policy.window_secs));
                // Retrying when told to is allowed.
                prop_assert_eq!(
                    policy.decide(Some(Window { started_at, failures }), now.plus(retry_after_secs)),
                    Decision::Allowed
                );
            }
        }
    }

    /// `combine` is commutative, associative, and never less strict than
    /// either input.
    #[test]
    fn combine_is_the_stricter(a in decision(), b in decision(), c in decision()) {
        let ab = combine(a, b);
        prop_assert_eq!(ab, combine(b, a));
        prop_assert_eq!(combine(ab, c), combine(a, combine(b, c)));
        prop_assert_eq!(combine(a, a), a);
        prop_assert_eq!(combine(a, Decision::Allowed), a);
        for input in [a, b] {
            if let Decision::Throttled { retry_after_secs: x } = input {
                match ab {
                    Decision::Throttled { retry_after_secs: y } => prop_assert!(y >= x),
                    Decision::Allowed => prop_assert!(false, "{:?} + {:?} allowed", a, b),
                }
            }
        }
        if a == Decision::Allowed && b == Decision::Allowed {
            prop_assert_eq!(ab, Decision::Allowed);
        }
    }

    /// The minutes shown round up: never zero for a wait, never short.
    #[test]
    fn minutes_round_up(secs in 1i64..=30 * DAY) {
        let m = minutes(secs);
        prop_assert!(m >= 1);
        prop_assert!(m * 60 >= secs);
        prop_assert!((m - 1) * 60 < secs);
    }
}

// ---------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------

proptest! {
    /// Idle longer than `IDLE_TIMEOUT`, or authenticated longer ago than
    /// `ABSOLUTE_TIMEOUT`: expired, whatever else. Otherwise the reauth flag
    /// decides.
    #[test]
    fn session_state_follows_the_timeouts(
        auth_time in instant(),
        seen_after_auth in 0i64..=60 * DAY,
        idle in 0i64..=60 * DAY,
        needs_reauth in any::<bool>(),
    ) {
        let last_seen_at = auth_time.plus(seen_after_auth);
        let now = last_seen_at.plus(idle);
        let session = session_at(last_seen_at, auth_time, needs_reauth);
        let state = session.state(now);
        if idle > IDLE_TIMEOUT || now.0 - auth_time.0 > ABSOLUTE_TIMEOUT {
            prop_assert_eq!(state, SessionState::Expired);
        } else if needs_reauth {
            prop_assert_eq!(state, SessionState::NeedsReauth);
        } else {
            prop_assert_eq!(state, SessionState::Active);
        }
        prop_assert_eq!(session.should_touch(now), idle >= TOUCH_INTERVAL);
    }

    /// `amr` survives the trip through its stored form.
    #[test]
    fn amr_round_trips(amr in prop::collection::vec(prop_oneof![Just(AuthMethod::Pwd), Just(AuthMethod::Otp)], 0..5)) {
        let mut session = session_at(Timestamp(0), Timestamp(0), false);
        session.amr = amr.clone();
        prop_assert_eq!(Session::parse_amr(&session.amr_string()), amr);
    }

    /// A stored user agent has no control characters and at most 256
    /// characters, and a clean short one is kept as it is.
    #[test]
    fn clipped_user_agent_is_clean(ua in prop_oneof![any::<String>(), ".{200,300}"]) {
        let clipped = clip_user_agent(&ua);
        prop_assert!(clipped.chars().count() <= 256);
        prop_assert!(!clipped.chars().any(char::is_control));
        if ua.chars().count() <= 256 && !ua.chars().any(char::is_control) {
            prop_assert_eq!(clipped, ua);
        }
    }
}

// ---------------------------------------------------------------------------
// Passwords
// ---------------------------------------------------------------------------

fn password_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(any::<char>(), 0..=300).prop_map(|cs| cs.into_iter().collect()),
        prop::collection::vec(prop::char::range('a', 'z'), 0..=300).prop_map(|cs| cs.into_iter().collect()),
        // Right at the limits, in multi-byte characters.
        prop::sample::select(vec![MIN_LEN - 1, MIN_LEN, MAX_LEN, MAX_LEN + 1]).prop_map(|n| "é".repeat(n)),
    ]
}

proptest! {
    /// Never accepts fewer than `MIN_LEN` or more than `MAX_LEN` characters
    /// (characters, not bytes), with or without an email to compare.
    #[test]
    fn password_length_limits(pw in password_like(), email in address_like(true)) {
        let email = Email::parse(&email).ok();
        for result in [check_policy(&pw, None), check_policy(&pw, email.as_ref())] {
            let len = pw.chars().count();
            if len < MIN_LEN {
                prop_assert_eq!(result, Err(PasswordRejected::TooShort));
            } else if len > MAX_LEN {
                prop_assert_eq!(result, Err(PasswordRejected::TooLong));
            } else {
                prop_assert!(!matches!(result, Err(PasswordRejected::TooShort | PasswordRejected::TooLong)));
            }
        }
    }

    /// The account's own address, or its local part, in any case, is refused.
    #[test]
    fn password_is_not_the_email(input in address_like(true)) {
        let Ok(email) = Email::parse(&input) else { return Ok(()) };
        let local = email.as_str().split('@').next().unwrap().to_owned();
        for candidate in [email.as_str().to_owned(), email.as_str().to_ascii_uppercase(), local.to_ascii_uppercase()] {
            if (MIN_LEN..=MAX_LEN).contains(&candidate.chars().count()) {
                let result = check_policy(&candidate, Some(&email));
                prop_assert!(
                    matches!(result, Err(PasswordRejected::SameAsEmail | PasswordRejected::Common)),
                    "{:?} gave {:?}", candidate, result
                );
            }
        }
    }
}

proptest! {
    // Argon2id is deliberately slow: a handful of cases only.
    #![proptest_config(ProptestConfig::with_cases(3))]

    /// A hash verifies its own password and no other.
    #[test]
    fn hash_verifies_only_its_password(pw in ".{8,40}", other in ".{8,40}") {
        let pw = Secret::new(pw);
        let hash = password::hash(&pw).unwrap();
        prop_assert!(password::verify(&pw, Some(&hash)));
        if other != *pw.expose() {
            prop_assert!(!password::verify(&Secret::new(other), Some(&hash)));
        }
        prop_assert!(!password::verify(&pw, None));
    }
}

// ---------------------------------------------------------------------------
// Profile
// ---------------------------------------------------------------------------

/// Text a profile field might be given: anything, or something near a
/// locale or a time zone name.
fn profile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z]{1,8}([-_][a-zA-Z0-9]{1,8}){0,4}",
        "[A-Za-z]{1,12}/[A-Za-z_]{1,16}",
        prop::sample::select(vec![
            "en-us",
            "EN_gb",
            "x-private",
            "Europe/paris",
            " UTC ",
            "i-klingon"
        ])
        .prop_map(str::to_owned),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Never panics; what it accepts is trimmed, bounded, free of control
    /// characters, and already in its canonical form: saving it again
    /// changes nothing.
    #[test]
    fn profile_edit_is_total_and_canonical(
        fields in prop::collection::vec(profile_text(), 6),
        now in instant(),
    ) {
        let input = ProfileInput {
            name: fields[0].clone(),
            given_name: fields[1].clone(),
            family_name: fields[2].clone(),
            preferred_username: fields[3].clone(),
            locale: fields[4].clone(),
            zoneinfo: fields[5].clone(),
        };
        if let Ok(Some(p)) = Profile::default().edited(&input, now) {
            for v in [&p.name, &p.given_name, &p.family_name, &p.preferred_username, &p.locale, &p.zoneinfo]
                .into_iter()
                .flatten()
            {
                prop_assert!(!v.is_empty() && v.trim() == v && v.chars().count() <= 100);
                prop_assert!(!v.chars().any(char::is_control));
            }
            let again = ProfileInput {
                name: p.name.clone().unwrap_or_default(),
                given_name: p.given_name.clone().unwrap_or_default(),
                family_name: p.family_name.clone().unwrap_or_default(),
                preferred_username: p.preferred_username.clone().unwrap_or_default(),
                locale: p.locale.clone().unwrap_or_default(),
                zoneinfo: p.zoneinfo.clone().unwrap_or_default(),
            };
            prop_assert_eq!(p.edited(&again, Timestamp(now.0 + 1)), Ok(None));
        }
    }
}
