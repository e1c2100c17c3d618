//! Typed settings, validated before anything binds. A leaf: the command line builds
//! these, every other module reads them, and this module imports none of them.
//! Secrets are wrapped in [`Secret`] so no `Debug`, `Display` or log line can show them.

use std::convert::Infallible;
use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

/// Deployment environment, as the original's `APP_ENV`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// JSON log lines.
    Production,
    /// Human-readable log lines.
    Development,
}

impl Environment {
    /// The name as it appears in JSON and `APP_ENV`.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Production => "production",
            Environment::Development => "development",
        }
    }
}

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

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
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
    /// TLS to the server (`rediss://` or `REDIS_TLS=on`), when used.
    pub tls: Option<Tls>,
    /// Sentinels that name the primary, when used: then `host` and `port` are unused.
    pub sentinels: Option<Sentinels>,
    /// How many replicas must acknowledge a job before `POST /api/jobs` answers 202.
    pub wait_replicas: WaitReplicas,
    /// How long to wait for those acknowledgements.
    pub wait_timeout: Duration,
}

/// TLS to Redis, with rustls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// PEM bundle of the CA certificates to trust instead of the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
}

/// Redis found through Sentinel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentinels {
    /// `host:port` of each sentinel.
    pub addrs: Vec<(String, u16)>,
    /// The name the sentinels monitor the primary under.
    pub master: String,
    /// The sentinels' own password, when they have one.
    pub password: Option<Secret>,
    /// Whether the sentinels are spoken to over TLS (with Redis' CA).
    pub tls: bool,
}

impl Sentinels {
    /// Parses `host:port,host:port,...` (the port defaults to 26379).
    pub fn parse(list: &str, master: &str, password: Option<Secret>) -> Result<Self, ConfigError> {
        let mut addrs = Vec::new();
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (host, port) = match item.rsplit_once(':') {
                Some((host, port)) => (
                    host,
                    port.parse::<u16>()
                        .map_err(|_| invalid("REDIS_SENTINELS", format!("bad port in {item:?}")))?,
                ),
                None => (item, 26379),
            };
            let host = host.trim_matches(['[', ']']);
            if host.is_empty() {
                return Err(invalid("REDIS_SENTINELS", format!("no host in {item:?}")));
            }
            addrs.push((host.to_owned(), port));
        }
        if addrs.is_empty() {
            return Err(invalid("REDIS_SENTINELS", "names no sentinel"));
        }
        if master.is_empty() {
            return Err(invalid("REDIS_MASTER_NAME", "is empty"));
        }
        Ok(Sentinels {
            addrs,
            master: master.to_owned(),
            password,
            tls: false,
        })
    }
}

/// How many replicas must hold a job before it is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReplicas {
    /// One, whenever the primary has a replica connected; none on a lone server.
    Auto,
    /// Exactly this many (0: never wait).
    Count(u32),
}

impl FromStr for WaitReplicas {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(WaitReplicas::Auto),
            n => n
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= 16)
                .map(WaitReplicas::Count)
                .ok_or_else(|| format!("{s:?} is not `auto` or a number from 0 to 16")),
        }
    }
}

/// What the acknowledgement wait may be.
pub const WAIT_RANGE: RangeInclusive<Duration> = Duration::from_millis(1)..=Duration::from_secs(10);

impl RedisSettings {
    /// Settings for a server on `host:port` with no password.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        RedisSettings {
            host: host.into(),
            port,
            db: 0,
            username: None,
            password: None,
            tls: None,
            sentinels: None,
            wait_replicas: WaitReplicas::Auto,
            wait_timeout: Duration::from_millis(500),
        }
    }

    /// Parses `redis://[[user]:password@]host[:port][/db]` (`rediss://` for TLS).
    pub fn from_url(raw: &str) -> Result<Self, ConfigError> {
        let url = url::Url::parse(raw).map_err(|e| ConfigError::RedisUrl(e.to_string()))?;
        let tls = match url.scheme() {
            "redis" => None,
            "rediss" => Some(Tls { ca_file: None }),
            other => {
                return Err(ConfigError::RedisUrl(format!(
                    "scheme must be redis:// or rediss://, not {other}://"
                )));
            }
        };
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
            db,
            username,
            password,
            tls,
            ..RedisSettings::new(host, url.port().unwrap_or(6379))
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
    /// `redis://host:port/db` (`rediss://` with TLS; the sentinels and the primary's
    /// name with Sentinel), never with the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        match &self.sentinels {
            None => write!(f, "{scheme}://{}:{}/{}", self.host, self.port, self.db),
            Some(s) => {
                let addrs: Vec<String> = s.addrs.iter().map(|(h, p)| format!("{h}:{p}")).collect();
                write!(
                    f,
                    "{scheme}://{} (sentinels; primary {:?})/{}",
                    addrs.join(","),
                    s.master,
                    self.db
                )
            }
        }
    }
}

/// Which store backs the roles.
// Built once per process and read at start-up: the size of the Redis variant costs
// nothing, and boxing it would only make every test that builds one noisier.
#[allow(clippy::large_enum_variant)]
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
    /// Log level or filter (`RUST_LOG`, when set, wins).
    pub log_level: String,
    /// Where other processes can reach this one (`host` or `host:port`), announced in
    /// its heartbeat; `None`: the listen address, when it is not a wildcard.
    pub advertise: Option<String>,
    /// Serve the fault-injection routes under `/faults/` (gateway and worker).
    pub faults: bool,
    /// Bounds on the work a server takes on.
    pub limits: ServerLimits,
}

/// Bounds on the work one server takes on, so a flood is refused fast instead of
/// queueing without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections waiting to be accepted (the listen backlog).
    pub backlog: u32,
    /// Open connections per server thread; more wait in the backlog.
    pub max_connections: usize,
    /// Requests served at once (probes and scrapes aside); beyond it, a fast 503.
    /// 0: no bound.
    pub max_in_flight: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            backlog: 4096,
            max_connections: 25_000,
            max_in_flight: 0,
        }
    }
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
            log_level: "info".into(),
            faults: false,
            limits: ServerLimits::default(),
            advertise: None,
        }
    }

    /// Checks what the shared flags cannot check alone.
    pub fn validate(self) -> Result<Self, ConfigError> {
        if let StoreSettings::Redis(redis) = &self.store
            && redis.db < 0
        {
            return Err(invalid("REDIS_DB", format!("{} is negative", redis.db)));
        }
        if self.key_prefix.contains(char::is_whitespace) {
            return Err(invalid("KEY_PREFIX", "must not contain white space"));
        }
        if let Some(addr) = &self.advertise
            && url::Url::parse(&format!("http://{addr}"))
                .ok()
                .is_none_or(|u| u.host_str().is_none_or(str::is_empty) || u.path() != "/")
        {
            return Err(invalid(
                "ADVERTISE_ADDR",
                format!("{addr:?} is not a host or host:port"),
            ));
        }
        within("DRAIN_DELAY", self.drain_delay, SHUTDOWN_RANGE)?;
        let l = self.limits;
        if !(1..=65_535).contains(&l.backlog) {
            return Err(invalid("LISTEN_BACKLOG", "must be between 1 and 65535"));
        }
        if !(1..=1_000_000).contains(&l.max_connections) {
            return Err(invalid("MAX_CONNECTIONS", "must be between 1 and 1000000"));
        }
        if l.max_in_flight > 1_000_000 {
            return Err(invalid(
                "MAX_IN_FLIGHT",
                "must be at most 1000000 (0: no bound)",
            ));
        }
        within("GRACE_PERIOD", self.grace_period, SHUTDOWN_RANGE)?;
        Ok(self)
    }
}

/// What a drain delay or grace period may be: a pod's termination grace period is
/// rarely above a few minutes, and an hour bounds every wait built on them.
pub const SHUTDOWN_RANGE: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(3600);

/// A `ConfigError::Invalid` for `flag`.
pub fn invalid(flag: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        reason: reason.into(),
    }
}

/// `value` when it lies in `range`, else a usage error naming `flag`.
pub fn within(
    flag: &'static str,
    value: Duration,
    range: RangeInclusive<Duration>,
) -> Result<Duration, ConfigError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(invalid(
            flag,
            format!(
                "{} is not between {} and {}",
                humantime::format_duration(value),
                humantime::format_duration(*range.start()),
                humantime::format_duration(*range.end())
            ),
        ))
    }
}

/// The base URL of a service this one probes (`API_GATEWAY_URL`, ...): plain http to a
/// host, with no credentials, since it is logged and shown on the page. One rule for
/// every role that probes.
pub fn service_url(flag: &'static str, url: url::Url) -> Result<url::Url, ConfigError> {
    if url.scheme() != "http"
        || url.host_str().is_none_or(str::is_empty)
        || !url.username().is_empty()
        || url.password().is_some()
    {
        let mut shown = url;
        let _ = shown.set_password(None);
        let _ = shown.set_username("");
        return Err(invalid(
            flag,
            format!("{shown} is not an http://host[:port] URL without credentials"),
        ));
    }
    Ok(url)
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
    fn sentinels_and_tls_parse_and_print_without_secrets() {
        let s = Sentinels::parse(" s1:26380, s2 ,[::1]:1 ", "primary", None).expect("valid");
        assert_eq!(
            s.addrs,
            vec![
                ("s1".into(), 26380),
                ("s2".into(), 26379),
                ("::1".into(), 1)
            ]
        );
        let tls = RedisSettings::from_url("rediss://:hunter2@cache:6380/1").expect("valid");
        assert!(tls.tls.is_some());
        assert_eq!(tls.to_string(), "rediss://cache:6380/1");
        let ha = RedisSettings {
            sentinels: Some(s),
            ..tls
        };
        let shown = format!("{ha} {ha:?}");
        assert!(
            shown.contains("s1:26380") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert_eq!("auto".parse(), Ok(WaitReplicas::Auto));
        assert_eq!("2".parse(), Ok(WaitReplicas::Count(2)));
        assert!("99".parse::<WaitReplicas>().is_err());
    }

    #[test]
    fn secret_never_prints() {
        let s: Secret = "hunter2".parse().expect("infallible");
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
    }
}

/// Property tests: no configuration value makes a parser panic or echo a password.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn redis_urls_never_panic_or_show_the_password(
            // Mostly well-formed, so the branch that prints the settings is reached
            // as often as the refusals.
            scheme in prop_oneof![
                3 => Just("redis".to_owned()),
                3 => Just("rediss".to_owned()),
                1 => "[a-z]{0,6}",
            ],
            user in "[a-z%]{0,6}",
            host in prop_oneof![
                3 => "[a-z][a-z0-9-]{0,8}(\\.[a-z0-9-]{1,6}){0,2}",
                1 => "[a-z0-9.\\[\\]:%-]{0,16}",
            ],
            port in prop_oneof![3 => any::<u16>().prop_map(|p| p.to_string()), 1 => "[0-9a-z]{0,7}"],
            db in prop_oneof![3 => "[0-9]{1,2}", 1 => "[0-9a-z-]{0,5}"],
        ) {
            let raw = format!("{scheme}://{user}:hunter2secret@{host}:{port}/{db}");
            match RedisSettings::from_url(&raw) {
                Ok(s) => {
                    let shown = format!("{s} {s:?}");
                    prop_assert!(!shown.contains("hunter2secret"));
                }
                Err(e) => prop_assert!(!e.to_string().contains("hunter2secret")),
            }
        }

        #[test]
        fn sentinel_lists_and_wait_counts_never_panic(
            list in ".{0,40}",
            n in prop_oneof![Just("auto".to_owned()), "[0-9]{1,3}", ".{0,6}"],
        ) {
            if let Ok(s) = Sentinels::parse(&list, "mymaster", None) {
                prop_assert!(!s.addrs.is_empty());
            }
            let _ = n.parse::<WaitReplicas>();
        }

        #[test]
        fn probe_urls_never_keep_credentials(raw in "http://[a-z:@]{0,12}[a-z]{1,8}(:[0-9]{1,5})?/?") {
            if let Ok(url) = url::Url::parse(&raw)
                && let Ok(url) = service_url("API_GATEWAY_URL", url)
            {
                prop_assert!(url.username().is_empty() && url.password().is_none());
            }
        }
    }
}
