//! Configuration in one typed struct, layered: defaults, then a TOML file
//! (`--config`), then `GATEHOUSE_*` environment variables, which win.
//! Unknown keys and bad values stop the start with a message naming the key.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use url::Url;

use gatehouse_idp::keys::InstanceSecret;
use gatehouse_serve::{DEFAULT_LIMITS, Limits};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Public base URL. `None`: `http://` plus the address actually bound.
    pub issuer: Option<Url>,
    pub listen: SocketAddr,
    pub database_url: String,
    /// `smtp://host:port`; `None` writes mail as `.eml` files.
    pub smtp_url: Option<String>,
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    /// Encrypts the signing keys at rest: base64 of 32 random bytes
    /// (`openssl rand -base64 32`). `None`: `<data_dir>/secret.key`, created
    /// on first start. Several instances on one PostgreSQL database must all
    /// be given the same `GATEHOUSE_SECRET_KEY`.
    pub secret_key: Option<InstanceSecret>,
    /// An outbox message (a back-channel logout token) not delivered this
    /// long after it was written is dead-lettered. Default 24 hours.
    pub outbox_max_age: std::time::Duration,
    /// How long a back-channel logout token is valid (`exp` after `iat`).
    /// Each delivery attempt sends one signed for it. Default 120 seconds.
    pub logout_token_lifetime: std::time::Duration,
    /// Slow clients and the connection cap on the IdP's port
    /// (`GATEHOUSE_HEADER_READ_TIMEOUT`, `GATEHOUSE_BODY_TIMEOUT`,
    /// `GATEHOUSE_KEEP_ALIVE_TIMEOUT`: seconds; `GATEHOUSE_MAX_CONNECTIONS`).
    /// Defaults: [`gatehouse_serve::DEFAULT_LIMITS`].
    pub limits: gatehouse_serve::Limits,
    /// How long reliers may cache the JWKS (`GATEHOUSE_JWKS_MAX_AGE`,
    /// seconds; default 300): a rotated key is published this long (and a
    /// few seconds more) before it signs.
    pub jwks_max_age: std::time::Duration,
    /// The payments service, run by `gatehouse pay serve` (and by `gatehouse
    /// serve` beside the IdP when `pay_listen` is set).
    pub pay: PayConfig,
}

/// The payments service's settings (`GATEHOUSE_PAY_*`).
#[derive(Debug, Clone, Default)]
pub struct PayConfig {
    /// Where it listens (`GATEHOUSE_PAY_LISTEN`); `gatehouse serve` starts
    /// it only when this is set. `gatehouse pay serve` defaults to
    /// 127.0.0.1:8081.
    pub listen: Option<SocketAddr>,
    /// Its public URL, which is also its audience (`GATEHOUSE_PAY_PUBLIC_URL`);
    /// default `http://` plus the listening address.
    pub public_url: Option<Url>,
    /// Its own database (`GATEHOUSE_PAY_DATABASE_URL`); default
    /// `sqlite://<data_dir>/pay.db`.
    pub database_url: String,
    /// The IdP it trusts (`GATEHOUSE_PAY_ISSUER`); default the IdP's issuer.
    pub issuer: Option<Url>,
    /// Its registration at the IdP (`GATEHOUSE_PAY_CLIENT_ID`,
    /// `GATEHOUSE_PAY_CLIENT_SECRET`).
    pub client_id: Option<String>,
    pub client_secret: Option<gatehouse_core::Secret<String>>,
    /// Encrypts its signing key at rest (`GATEHOUSE_PAY_SECRET_KEY`, hex or
    /// base64 of 32 bytes: `openssl rand -hex 32`); default
    /// `<data_dir>/pay-secret.key`.
    /// Instances sharing a payments database must share it.
    pub secret_key: Option<gatehouse_core::Secret<String>>,
    /// The same limits as the IdP's, on its own port
    /// (`GATEHOUSE_PAY_HEADER_READ_TIMEOUT`, `GATEHOUSE_PAY_BODY_TIMEOUT`,
    /// `GATEHOUSE_PAY_KEEP_ALIVE_TIMEOUT`, `GATEHOUSE_PAY_MAX_CONNECTIONS`).
    pub limits: gatehouse_serve::Limits,
    /// How long the IdP's word on a buyer holds before money moves only
    /// after asking it again (`GATEHOUSE_PAY_STANDING_MAX_AGE`, seconds);
    /// `None`: the payments service's default (60 s).
    pub standing_max_age: Option<std::time::Duration>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("configuration: {key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn error(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// The file's shape: every key optional, nothing else allowed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    issuer: Option<String>,
    listen: Option<String>,
    database_url: Option<String>,
    smtp_url: Option<String>,
    data_dir: Option<String>,
    log_format: Option<String>,
    secret_key: Option<String>,
    outbox_max_age: Option<String>,
    logout_token_lifetime: Option<String>,
    header_read_timeout: Option<String>,
    body_timeout: Option<String>,
    keep_alive_timeout: Option<String>,
    max_connections: Option<String>,
    jwks_max_age: Option<String>,
    pay_listen: Option<String>,
    pay_public_url: Option<String>,
    pay_database_url: Option<String>,
    pay_issuer: Option<String>,
    pay_client_id: Option<String>,
    pay_client_secret: Option<String>,
    pay_secret_key: Option<String>,
    pay_header_read_timeout: Option<String>,
    pay_body_timeout: Option<String>,
    pay_keep_alive_timeout: Option<String>,
    pay_max_connections: Option<String>,
    pay_standing_max_age: Option<String>,
}

/// The environment variables we read; `GATEHOUSE_TEST_*` is left to the
/// test suite.
const ENV_KEYS: [&str; 27] = [
    "GATEHOUSE_ISSUER",
    "GATEHOUSE_LISTEN",
    "GATEHOUSE_DATABASE_URL",
    "GATEHOUSE_SMTP_URL",
    "GATEHOUSE_DATA_DIR",
    "GATEHOUSE_LOG_FORMAT",
    "GATEHOUSE_SECRET_KEY",
    "GATEHOUSE_OUTBOX_MAX_AGE",
    "GATEHOUSE_LOGOUT_TOKEN_LIFETIME",
    "GATEHOUSE_HEADER_READ_TIMEOUT",
    "GATEHOUSE_BODY_TIMEOUT",
    "GATEHOUSE_KEEP_ALIVE_TIMEOUT",
    "GATEHOUSE_MAX_CONNECTIONS",
    "GATEHOUSE_JWKS_MAX_AGE",
    "GATEHOUSE_PAY_LISTEN",
    "GATEHOUSE_PAY_PUBLIC_URL",
    "GATEHOUSE_PAY_DATABASE_URL",
    "GATEHOUSE_PAY_ISSUER",
    "GATEHOUSE_PAY_CLIENT_ID",
    "GATEHOUSE_PAY_CLIENT_SECRET",
    "GATEHOUSE_PAY_SECRET_KEY",
    "GATEHOUSE_PAY_HEADER_READ_TIMEOUT",
    "GATEHOUSE_PAY_BODY_TIMEOUT",
    "GATEHOUSE_PAY_KEEP_ALIVE_TIMEOUT",
    "GATEHOUSE_PAY_MAX_CONNECTIONS",
    "GATEHOUSE_PAY_STANDING_MAX_AGE",
    // The log filter (tracing's EnvFilter syntax), read by `main`.
    "GATEHOUSE_LOG",
];

impl Config {
    /// Defaults, then the file (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let text = match file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| error("--config", format!("cannot read {}: {e}", path.display())))?,
            ),
            None => None,
        };
        Self::from_sources(text.as_deref(), std::env::vars().collect())
    }

    /// The layering itself, with the sources passed in (testable).
    pub fn from_sources(file: Option<&str>, env: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let file: FileConfig = match file {
            Some(text) => toml::from_str(text).map_err(|e| {
                let message = e.message().to_owned();
                let key = message
                    .split('`')
                    .nth(1)
                    .map(str::to_owned)
                    .unwrap_or_else(|| "config file".to_owned());
                error(key, message)
            })?,
            None => FileConfig::default(),
        };
        for key in env.keys() {
            if key.starts_with("GATEHOUSE_") && !key.starts_with("GATEHOUSE_TEST_") && !ENV_KEYS.contains(&key.as_str())
            {
                return Err(error(key, format!("unknown setting (known: {})", ENV_KEYS.join(", "))));
            }
        }
        // Each setting: the environment wins over the file; remember which
        // key supplied it, for the error message.
        let pick = |env_key: &str, file_key: &str, file_value: &Option<String>| -> Option<(String, String)> {
            env.get(env_key)
                .map(|v| (env_key.to_owned(), v.clone()))
                .or_else(|| file_value.clone().map(|v| (file_key.to_owned(), v)))
        };

        let data_dir = pick("GATEHOUSE_DATA_DIR", "data_dir", &file.data_dir)
            .map(|(_, v)| PathBuf::from(v))
            .unwrap_or_else(|| PathBuf::from("gatehouse-data"));
        let listen = match pick("GATEHOUSE_LISTEN", "listen", &file.listen) {
            Some((key, v)) => address(key, &v)?,
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        let issuer = match pick("GATEHOUSE_ISSUER", "issuer", &file.issuer) {
            Some((key, v)) => Some(parse_issuer(&v).map_err(|m| error(key, m))?),
            None => None,
        };
        let database_url = match pick("GATEHOUSE_DATABASE_URL", "database_url", &file.database_url) {
            Some((key, v)) => database(key, v)?,
            None => format!("sqlite://{}", data_dir.join("gatehouse.db").display()),
        };
        let pay = PayConfig {
            listen: match pick("GATEHOUSE_PAY_LISTEN", "pay_listen", &file.pay_listen) {
                Some((key, v)) => Some(address(key, &v)?),
                None => None,
            },
            public_url: match pick("GATEHOUSE_PAY_PUBLIC_URL", "pay_public_url", &file.pay_public_url) {
                Some((key, v)) => Some(parse_issuer(&v).map_err(|m| error(key, m))?),
                None => None,
            },
            database_url: match pick("GATEHOUSE_PAY_DATABASE_URL", "pay_database_url", &file.pay_database_url) {
                Some((key, v)) => database(key, v)?,
                None => format!("sqlite://{}", data_dir.join("pay.db").display()),
            },
            issuer: match pick("GATEHOUSE_PAY_ISSUER", "pay_issuer", &file.pay_issuer) {
                Some((key, v)) => Some(parse_issuer(&v).map_err(|m| error(key, m))?),
                None => None,
            },
            client_id: pick("GATEHOUSE_PAY_CLIENT_ID", "pay_client_id", &file.pay_client_id).map(|(_, v)| v),
            client_secret: pick(
                "GATEHOUSE_PAY_CLIENT_SECRET",
                "pay_client_secret",
                &file.pay_client_secret,
            )
            .map(|(_, v)| gatehouse_core::Secret::new(v)),
            // The value is a secret: the message never shows it.
            secret_key: match pick("GATEHOUSE_PAY_SECRET_KEY", "pay_secret_key", &file.pay_secret_key) {
                // Parsed as the payments service will parse it, to fail here
                // with the key's name.
                Some((key, v)) => match InstanceSecret::parse(&v) {
                    Ok(_) => Some(gatehouse_core::Secret::new(v.trim().to_owned())),
                    Err(_) => {
                        return Err(error(
                            key,
                            "must be the hex or base64 of 32 bytes (openssl rand -hex 32)",
                        ));
                    }
                },
                None => None,
            },
            limits: limits(
                &pick,
                "GATEHOUSE_PAY_",
                "pay_",
                [
                    &file.pay_header_read_timeout,
                    &file.pay_body_timeout,
                    &file.pay_keep_alive_timeout,
                    &file.pay_max_connections,
                ],
            )?,
            standing_max_age: match pick(
                "GATEHOUSE_PAY_STANDING_MAX_AGE",
                "pay_standing_max_age",
                &file.pay_standing_max_age,
            ) {
                Some(v) => Some(seconds(Some(v), gatehouse_pay::DEFAULT_STANDING_MAX_AGE)?),
                None => None,
            },
        };
        let limits = limits(
            &pick,
            "GATEHOUSE_",
            "",
            [
                &file.header_read_timeout,
                &file.body_timeout,
                &file.keep_alive_timeout,
                &file.max_connections,
            ],
        )?;
        let jwks_max_age = seconds(
            pick("GATEHOUSE_JWKS_MAX_AGE", "jwks_max_age", &file.jwks_max_age),
            gatehouse_idp::keys::DEFAULT_JWKS_MAX_AGE,
        )?;
        let smtp_url = match pick("GATEHOUSE_SMTP_URL", "smtp_url", &file.smtp_url) {
            Some((key, v)) => {
                let ok = Url::parse(&v).is_ok_and(|u| u.scheme() == "smtp" && u.host_str().is_some());
                if !ok {
                    return Err(error(key, format!("{v:?} is not an smtp://host:port URL")));
                }
                Some(v)
            }
            None => None,
        };
        let log_format = match pick("GATEHOUSE_LOG_FORMAT", "log_format", &file.log_format) {
            Some((key, v)) => match v.as_str() {
                "human" => LogFormat::Human,
                "json" => LogFormat::Json,
                _ => return Err(error(key, format!("{v:?} is neither \"human\" nor \"json\""))),
            },
            None => LogFormat::Human,
        };
        // The value is a secret: the message never shows it.
        let secret_key = match pick("GATEHOUSE_SECRET_KEY", "secret_key", &file.secret_key) {
            Some((key, v)) => Some(InstanceSecret::parse(&v).map_err(|e| error(key, e.to_string()))?),
            None => None,
        };
        let outbox_max_age = seconds(
            pick("GATEHOUSE_OUTBOX_MAX_AGE", "outbox_max_age", &file.outbox_max_age),
            gatehouse_idp::outbox::DEFAULT_MAX_AGE,
        )?;
        let logout_token_lifetime = seconds(
            pick(
                "GATEHOUSE_LOGOUT_TOKEN_LIFETIME",
                "logout_token_lifetime",
                &file.logout_token_lifetime,
            ),
            gatehouse_idp::outbox::DEFAULT_LOGOUT_TOKEN_LIFETIME,
        )?;
        Ok(Config {
            issuer,
            listen,
            database_url,
            smtp_url,
            data_dir,
            log_format,
            secret_key,
            outbox_max_age,
            logout_token_lifetime,
            limits,
            jwks_max_age,
            pay,
        })
    }

    /// Where `.eml` files go when there is no SMTP server.
    pub fn mail_dir(&self) -> PathBuf {
        self.data_dir.join("mail")
    }
}

fn address(key: String, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .parse()
        .map_err(|_| error(key, format!("{value:?} is not an address:port such as 127.0.0.1:8080")))
}

/// Finds a setting: the environment variable, else the file's value; with
/// the key it came from.
type Pick<'a> = dyn Fn(&str, &str, &Option<String>) -> Option<(String, String)> + 'a;

/// The four [`Limits`] of one port: `{env_prefix}HEADER_READ_TIMEOUT`,
/// `BODY_TIMEOUT`, `KEEP_ALIVE_TIMEOUT` (seconds) and `MAX_CONNECTIONS`, and
/// the file keys `{file_prefix}header_read_timeout` and so on, whose values
/// `file` holds in that order.
fn limits(
    pick: &Pick<'_>,
    env_prefix: &str,
    file_prefix: &str,
    file: [&Option<String>; 4],
) -> Result<Limits, ConfigError> {
    let [header, body, keep_alive, max] = file;
    let value = |name: &str, file_value: &Option<String>| {
        pick(
            &format!("{env_prefix}{}", name.to_uppercase()),
            &format!("{file_prefix}{name}"),
            file_value,
        )
    };
    Ok(Limits {
        header_read_timeout: seconds(value("header_read_timeout", header), DEFAULT_LIMITS.header_read_timeout)?,
        body_timeout: seconds(value("body_timeout", body), DEFAULT_LIMITS.body_timeout)?,
        keep_alive_timeout: seconds(
            value("keep_alive_timeout", keep_alive),
            DEFAULT_LIMITS.keep_alive_timeout,
        )?,
        max_connections: count(value("max_connections", max))?,
    })
}

/// A positive whole number of seconds, or `default`.
fn seconds(value: Option<(String, String)>, default: std::time::Duration) -> Result<std::time::Duration, ConfigError> {
    match value {
        Some((key, v)) => match v.parse::<u64>() {
            Ok(secs) if secs > 0 => Ok(std::time::Duration::from_secs(secs)),
            _ => Err(error(key, format!("{v:?} is not a positive number of seconds"))),
        },
        None => Ok(default),
    }
}

/// A positive count, or `None` for the default.
fn count(value: Option<(String, String)>) -> Result<Option<usize>, ConfigError> {
    match value {
        Some((key, v)) => match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(error(key, format!("{v:?} is not a positive number"))),
        },
        None => Ok(None),
    }
}

fn database(key: String, value: String) -> Result<String, ConfigError> {
    if !(value.starts_with("sqlite:") || value.starts_with("postgres://") || value.starts_with("postgresql://")) {
        return Err(error(key, "must start with sqlite:// or postgres://"));
    }
    Ok(value)
}

/// The issuer is an absolute http(s) URL with no query or fragment, https
/// unless on loopback (cookies are `Secure` everywhere else).
pub fn parse_issuer(value: &str) -> Result<Url, String> {
    let url = Url::parse(value).map_err(|e| format!("{value:?} is not a URL: {e}"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".to_owned());
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if gatehouse_idp::Settings::new(url.clone()).secure_cookies => {
            Err("must use https unless the host is loopback (127.0.0.1, ::1 or localhost)".to_owned())
        }
        "http" => Ok(url),
        other => Err(format!("scheme {other:?} is not http or https")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_need_nothing() {
        let c = Config::from_sources(None, env(&[])).expect("defaults");
        assert_eq!(c.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(
            c.database_url,
            format!(
                "sqlite://{}",
                PathBuf::from("gatehouse-data").join("gatehouse.db").display()
            )
        );
        assert_eq!(c.issuer, None);
        assert_eq!(c.smtp_url, None);
    }

    #[test]
    fn environment_wins_over_file() {
        let file = "listen = \"127.0.0.1:9000\"\ndata_dir = \"/tmp/x\"\n";
        let c = Config::from_sources(Some(file), env(&[("GATEHOUSE_LISTEN", "127.0.0.1:9100")])).expect("ok");
        assert_eq!(c.listen.port(), 9100);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.database_url, "sqlite:///tmp/x/gatehouse.db");
    }

    #[test]
    fn unknown_and_bad_keys_are_named() {
        let e = Config::from_sources(Some("lissten = \"x\""), env(&[])).expect_err("unknown file key");
        assert_eq!(e.key, "lissten");
        let e = Config::from_sources(None, env(&[("GATEHOUSE_LISTN", "x")])).expect_err("unknown env key");
        assert_eq!(e.key, "GATEHOUSE_LISTN");
        let e = Config::from_sources(None, env(&[("GATEHOUSE_LISTEN", "nope")])).expect_err("bad value");
        assert_eq!(e.key, "GATEHOUSE_LISTEN");
        let e = Config::from_sources(Some("listen = \"nope\""), env(&[])).expect_err("bad file value");
        assert_eq!(e.key, "listen");
        let e = Config::from_sources(None, env(&[("GATEHOUSE_DATABASE_URL", "mysql://x")])).expect_err("bad db");
        assert_eq!(e.key, "GATEHOUSE_DATABASE_URL");
        let e = Config::from_sources(None, env(&[("GATEHOUSE_SMTP_URL", "http://x")])).expect_err("bad smtp");
        assert_eq!(e.key, "GATEHOUSE_SMTP_URL");
        // The test suite's own variables are not settings.
        assert!(Config::from_sources(None, env(&[("GATEHOUSE_TEST_POSTGRES_URL", "x")])).is_ok());
    }

    #[test]
    fn the_payments_service_has_its_own_settings() {
        let c = Config::from_sources(None, env(&[])).expect("defaults");
        assert_eq!(c.pay.listen, None);
        assert_eq!(
            c.pay.database_url,
            format!("sqlite://{}", PathBuf::from("gatehouse-data").join("pay.db").display())
        );
        let c = Config::from_sources(
            Some("pay_listen = \"127.0.0.1:9001\"\npay_client_id = \"p\""),
            env(&[("GATEHOUSE_PAY_DATABASE_URL", "postgres://db/pay")]),
        )
        .expect("ok");
        assert_eq!(c.pay.listen, Some("127.0.0.1:9001".parse().expect("addr")));
        assert_eq!(c.pay.client_id.as_deref(), Some("p"));
        assert_eq!(c.pay.database_url, "postgres://db/pay");
        let hex = "ab".repeat(32);
        let c = Config::from_sources(None, env(&[("GATEHOUSE_PAY_SECRET_KEY", &hex)])).expect("ok");
        assert_eq!(c.pay.secret_key.map(|s| s.expose().clone()), Some(hex.clone()));
        let e = Config::from_sources(None, env(&[("GATEHOUSE_PAY_SECRET_KEY", "abcd")])).expect_err("short");
        assert_eq!(e.key, "GATEHOUSE_PAY_SECRET_KEY");
        assert!(!e.message.contains("abcd"));
        let e = Config::from_sources(None, env(&[("GATEHOUSE_PAY_LISTEN", "x")])).expect_err("bad");
        assert_eq!(e.key, "GATEHOUSE_PAY_LISTEN");
        let e =
            Config::from_sources(None, env(&[("GATEHOUSE_PAY_PUBLIC_URL", "http://pay.example")])).expect_err("http");
        assert_eq!(e.key, "GATEHOUSE_PAY_PUBLIC_URL");
    }

    #[test]
    fn outbox_max_age_is_positive_seconds() {
        let c = Config::from_sources(None, env(&[])).expect("defaults");
        assert_eq!(c.outbox_max_age, gatehouse_idp::outbox::DEFAULT_MAX_AGE);
        let c = Config::from_sources(Some("outbox_max_age = \"60\""), env(&[])).expect("file");
        assert_eq!(c.outbox_max_age, std::time::Duration::from_secs(60));
        let c = Config::from_sources(None, env(&[("GATEHOUSE_OUTBOX_MAX_AGE", "5")])).expect("env");
        assert_eq!(c.outbox_max_age, std::time::Duration::from_secs(5));
        for bad in ["0", "-1", "1h"] {
            let e = Config::from_sources(None, env(&[("GATEHOUSE_OUTBOX_MAX_AGE", bad)])).expect_err(bad);
            assert_eq!(e.key, "GATEHOUSE_OUTBOX_MAX_AGE");
        }
    }

    #[test]
    fn logout_token_lifetime_is_positive_seconds() {
        let c = Config::from_sources(None, env(&[])).expect("defaults");
        assert_eq!(
            c.logout_token_lifetime,
            gatehouse_idp::outbox::DEFAULT_LOGOUT_TOKEN_LIFETIME
        );
        let c = Config::from_sources(Some("logout_token_lifetime = \"30\""), env(&[])).expect("file");
        assert_eq!(c.logout_token_lifetime, std::time::Duration::from_secs(30));
        let c = Config::from_sources(None, env(&[("GATEHOUSE_LOGOUT_TOKEN_LIFETIME", "5")])).expect("env");
        assert_eq!(c.logout_token_lifetime, std::time::Duration::from_secs(5));
        for bad in ["0", "-1", "2m"] {
            let e = Config::from_sources(None, env(&[("GATEHOUSE_LOGOUT_TOKEN_LIFETIME", bad)])).expect_err(bad);
            assert_eq!(e.key, "GATEHOUSE_LOGOUT_TOKEN_LIFETIME");
        }
    }

    #[test]
    fn connection_limits_have_defaults_and_their_own_keys() {
        let c = Config::from_sources(None, env(&[])).expect("defaults");
        assert_eq!(c.limits, DEFAULT_LIMITS);
        assert_eq!(c.pay.limits, DEFAULT_LIMITS);
        let c = Config::from_sources(
            Some("header_read_timeout = \"3\"\nmax_connections = \"500\"\npay_body_timeout = \"7\""),
            env(&[
                ("GATEHOUSE_KEEP_ALIVE_TIMEOUT", "2"),
                ("GATEHOUSE_BODY_TIMEOUT", "4"),
                ("GATEHOUSE_PAY_MAX_CONNECTIONS", "50"),
                ("GATEHOUSE_PAY_HEADER_READ_TIMEOUT", "6"),
                ("GATEHOUSE_PAY_KEEP_ALIVE_TIMEOUT", "8"),
            ]),
        )
        .expect("ok");
        let secs = std::time::Duration::from_secs;
        assert_eq!(
            c.limits,
            Limits {
                header_read_timeout: secs(3),
                body_timeout: secs(4),
                keep_alive_timeout: secs(2),
                max_connections: Some(500),
            }
        );
        assert_eq!(
            c.pay.limits,
            Limits {
                header_read_timeout: secs(6),
                body_timeout: secs(7),
                keep_alive_timeout: secs(8),
                max_connections: Some(50),
            }
        );
        for key in [
            "GATEHOUSE_HEADER_READ_TIMEOUT",
            "GATEHOUSE_BODY_TIMEOUT",
            "GATEHOUSE_KEEP_ALIVE_TIMEOUT",
            "GATEHOUSE_MAX_CONNECTIONS",
            "GATEHOUSE_PAY_MAX_CONNECTIONS",
        ] {
            for bad in ["0", "-1", "ten"] {
                let e = Config::from_sources(None, env(&[(key, bad)])).expect_err(bad);
                assert_eq!(e.key, key);
            }
        }
    }

    #[test]
    fn jwks_max_age_is_positive_seconds() {
        let c = Config::from_sources(None, env(&[])).expect("defaults");
        assert_eq!(c.jwks_max_age, std::time::Duration::from_secs(300));
        let c = Config::from_sources(Some("jwks_max_age = \"60\""), env(&[])).expect("file");
        assert_eq!(c.jwks_max_age, std::time::Duration::from_secs(60));
        let c = Config::from_sources(None, env(&[("GATEHOUSE_JWKS_MAX_AGE", "2")])).expect("env");
        assert_eq!(c.jwks_max_age, std::time::Duration::from_secs(2));
        let e = Config::from_sources(None, env(&[("GATEHOUSE_JWKS_MAX_AGE", "0")])).expect_err("zero");
        assert_eq!(e.key, "GATEHOUSE_JWKS_MAX_AGE");
    }

    #[test]
    fn the_payments_standing_max_age_is_positive_seconds() {
        let c = Config::from_sources(None, env(&[])).expect("defaults");
        assert_eq!(c.pay.standing_max_age, None, "the payments service's default");
        let c = Config::from_sources(Some("pay_standing_max_age = \"30\""), env(&[])).expect("file");
        assert_eq!(c.pay.standing_max_age, Some(std::time::Duration::from_secs(30)));
        let c = Config::from_sources(None, env(&[("GATEHOUSE_PAY_STANDING_MAX_AGE", "5")])).expect("env");
        assert_eq!(c.pay.standing_max_age, Some(std::time::Duration::from_secs(5)));
        let e = Config::from_sources(None, env(&[("GATEHOUSE_PAY_STANDING_MAX_AGE", "soon")])).expect_err("text");
        assert_eq!(e.key, "GATEHOUSE_PAY_STANDING_MAX_AGE");
    }

    #[test]
    fn secret_key_is_32_bytes_of_base64_and_never_shown() {
        let good = InstanceSecret::generate();
        let text = good.to_base64().expose().clone();
        let c = Config::from_sources(None, env(&[("GATEHOUSE_SECRET_KEY", &text)])).expect("ok");
        assert_eq!(c.secret_key, Some(good.clone()));
        assert!(!format!("{c:?}").contains(&text));
        let c = Config::from_sources(Some(&format!("secret_key = \"{text}\"")), env(&[])).expect("ok");
        assert_eq!(c.secret_key, Some(good));
        assert_eq!(Config::from_sources(None, env(&[])).expect("ok").secret_key, None);
        let short = "c2hvcnQgc2VjcmV0";
        let e = Config::from_sources(None, env(&[("GATEHOUSE_SECRET_KEY", short)])).expect_err("short");
        assert_eq!(e.key, "GATEHOUSE_SECRET_KEY");
        assert!(!e.message.contains(short), "{}", e.message);
        let e = Config::from_sources(Some("secret_key = \"not base64!\""), env(&[])).expect_err("bad");
        assert_eq!(e.key, "secret_key");
    }

    #[test]
    fn issuer_must_be_https_off_loopback() {
        assert!(parse_issuer("https://id.example.com").is_ok());
        assert!(parse_issuer("http://127.0.0.1:8080").is_ok());
        assert!(parse_issuer("http://localhost:8080").is_ok());
        assert!(parse_issuer("http://id.example.com").is_err());
        assert!(parse_issuer("https://id.example.com/?a=b").is_err());
        assert!(parse_issuer("ftp://id.example.com").is_err());
        let e = Config::from_sources(None, env(&[("GATEHOUSE_ISSUER", "http://id.example.com")])).expect_err("http");
        assert_eq!(e.key, "GATEHOUSE_ISSUER");
    }
}
