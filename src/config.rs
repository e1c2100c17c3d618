//! Typed settings built from the parsed flags, validated before anything binds.
//! Secrets are wrapped in [`Secret`] so no `Debug`, `Display` or log line can show them.

use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use crate::cli::{CommonArgs, Environment, WorkerFlags};
use crate::roles::worker::WorkerConfig;

/// A value that must never be printed: its `Debug` and `Display` show `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that needs it (the Redis handshake).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A setting that cannot be used; reported in one line before anything is served.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `REDIS_URL` / `--redis-url` did not parse. The URL itself is not repeated: it may
    /// hold the password.
    #[error("invalid REDIS_URL: {0}")]
    RedisUrl(String),
    /// A flag value outside what the role can use.
    #[error("invalid {flag}: {reason}")]
    Invalid {
        /// The flag or variable at fault.
        flag: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Where a Redis server is and how to log in to it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Database number.
    pub db: i64,
    /// ACL user name, when not the default user.
    pub username: Option<String>,
    /// Password (`requirepass` or the ACL user's).
    pub password: Option<Secret>,
}

impl RedisSettings {
    /// Settings for a server on `host:port` with no password.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        RedisSettings {
            host: host.into(),
            port,
            db: 0,
            username: None,
            password: None,
        }
    }

    /// Parses `redis://[[user]:password@]host[:port][/db]`.
    pub fn from_url(raw: &str) -> Result<Self, ConfigError> {
        let url = url::Url::parse(raw).map_err(|e| ConfigError::RedisUrl(e.to_string()))?;
        if url.scheme() != "redis" {
            return Err(ConfigError::RedisUrl(format!(
                "scheme must be redis://, not {}://",
                url.scheme()
            )));
        }
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h.trim_matches(['[', ']']).to_owned(),
            _ => return Err(ConfigError::RedisUrl("no host".into())),
        };
        let db = match url.path().trim_start_matches('/') {
            "" => 0,
            db => db.parse().map_err(|_| {
                ConfigError::RedisUrl(format!("database must be a number, not {db:?}"))
            })?,
        };
        let password = url.password().map(|p| decode(p).map(Secret)).transpose()?;
        let username = Some(url.username())
            .filter(|u| !u.is_empty())
            .map(decode)
            .transpose()?;
        Ok(RedisSettings {
            host,
            port: url.port().unwrap_or(6379),
            db,
            username,
            password,
        })
    }
}

fn decode(part: &str) -> Result<String, ConfigError> {
    percent_encoding::percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ConfigError::RedisUrl("user or password is not UTF-8".into()))
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for RedisSettings {
    /// `redis://host:port/db`, never with the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis://{}:{}/{}", self.host, self.port, self.db)
    }
}

/// Which store backs the roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    /// The embedded in-process store (`svc all` without Redis).
    Memory,
    /// A Redis server shared by every replica.
    Redis(RedisSettings),
}

/// Settings every serving role shares.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Deployment environment.
    pub environment: Environment,
    /// The store to use.
    pub store: StoreSettings,
    /// Prefix of the keys this system adds.
    pub key_prefix: String,
    /// Stay ready while the store is unreachable.
    pub ready_without_store: bool,
    /// How often the store is pinged for readiness (probes read the cached answer).
    pub store_check_period: Duration,
    /// After a shutdown signal: serve, unready, this long before closing the listener.
    pub drain_delay: Duration,
    /// After the drain delay: how long in-flight work may take.
    pub grace_period: Duration,
}

impl Settings {
    /// Settings for tests and `svc all`: embedded store, development, short shutdown.
    pub fn for_memory_store() -> Self {
        Settings {
            environment: Environment::Development,
            store: StoreSettings::Memory,
            key_prefix: "svc:".into(),
            ready_without_store: false,
            store_check_period: Duration::from_secs(1),
            drain_delay: Duration::ZERO,
            grace_period: Duration::from_secs(5),
        }
    }

    /// Validates the shared flags. `redis_required` is false only for `svc all`, which
    /// falls back to the embedded store when no Redis is named.
    pub fn from_args(args: &CommonArgs, redis_required: bool) -> Result<Self, ConfigError> {
        let store = match (&args.redis_url, &args.redis_host) {
            (Some(url), _) => StoreSettings::Redis(RedisSettings::from_url(url.expose())?),
            (None, host) if host.is_some() || redis_required => {
                let host = host.clone().unwrap_or_else(|| "localhost".into());
                if host.is_empty() {
                    return Err(ConfigError::Invalid {
                        flag: "REDIS_HOST",
                        reason: "empty host".into(),
                    });
                }
                StoreSettings::Redis(RedisSettings {
                    db: args.redis_db,
                    password: args
                        .redis_password
                        .clone()
                        .filter(|p| !p.expose().is_empty()),
                    ..RedisSettings::new(host, args.redis_port)
                })
            }
            (None, _) => StoreSettings::Memory,
        };
        if let StoreSettings::Redis(redis) = &store
            && redis.db < 0
        {
            return Err(ConfigError::Invalid {
                flag: "REDIS_DB",
                reason: format!("{} is negative", redis.db),
            });
        }
        if args.key_prefix.contains(char::is_whitespace) {
            return Err(ConfigError::Invalid {
                flag: "KEY_PREFIX",
                reason: "must not contain white space".into(),
            });
        }
        Ok(Settings {
            environment: args.environment,
            store,
            key_prefix: args.key_prefix.clone(),
            ready_without_store: args.ready_without_redis,
            store_check_period: Duration::from_secs(1),
            drain_delay: args.drain_delay,
            grace_period: args.grace_period,
        })
    }
}

/// Validates the worker flags; `gateway_url` and `dashboard_url` are where
/// `health_check` probes.
pub fn worker_config(
    flags: &WorkerFlags,
    gateway_url: url::Url,
    dashboard_url: url::Url,
) -> Result<WorkerConfig, ConfigError> {
    let invalid = |flag, reason: &str| {
        Err(ConfigError::Invalid {
            flag,
            reason: reason.to_owned(),
        })
    };
    if flags.interval < Duration::from_millis(100) {
        return invalid("WORKER_INTERVAL", "must be at least 100ms");
    }
    if flags.visibility_timeout < Duration::from_millis(100) {
        return invalid("VISIBILITY_TIMEOUT", "must be at least 100ms");
    }
    if flags.max_attempts == 0 {
        return invalid("MAX_ATTEMPTS", "must be at least 1");
    }
    if !(1..=1024).contains(&flags.concurrency) {
        return invalid("WORKER_CONCURRENCY", "must be between 1 and 1024");
    }
    for (flag, url) in [
        ("API_GATEWAY_URL", &gateway_url),
        ("DASHBOARD_URL", &dashboard_url),
    ] {
        if url.scheme() != "http" {
            return invalid(flag, "must be an http:// URL");
        }
    }
    Ok(WorkerConfig {
        interval: flags.interval,
        gateway_url,
        dashboard_url,
        visibility_timeout: flags.visibility_timeout,
        max_attempts: flags.max_attempts,
        concurrency: flags.concurrency,
    })
}

/// The address a single-role process listens on.
pub fn listen_addr(host: IpAddr, port: Option<u16>, default_port: u16) -> SocketAddr {
    SocketAddr::new(host, port.unwrap_or(default_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_url_parts() {
        let s = RedisSettings::from_url("redis://:p%40ss@cache:6380/3").expect("valid url");
        assert_eq!(s.host, "cache");
        assert_eq!(s.port, 6380);
        assert_eq!(s.db, 3);
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("p@ss"));
        assert_eq!(s.to_string(), "redis://cache:6380/3");
        assert!(!format!("{s:?}").contains("p@ss"));
    }

    #[test]
    fn redis_url_rejects_garbage_without_echoing_it() {
        for bad in [
            "not a url",
            "http://:hunter2@x/0",
            "redis://:hunter2@x/zero",
            "redis:///0",
        ] {
            let err = RedisSettings::from_url(bad).expect_err(bad).to_string();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn secret_never_prints() {
        let s: Secret = "hunter2".parse().expect("infallible");
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
    }
}
