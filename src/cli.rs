//! The command line: one [`Command`] per subcommand. Every setting is a flag with an
//! environment fallback, and the original system's variable names keep working.
//! Flags are typed here and turned into the validated settings of [`crate::config`] and
//! each role's own config, and each serving command binds its ports here, so a bad
//! flag or a taken port is reported before anything else happens. Only `main` uses
//! this module.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand};

use crate::Error;
use crate::config::{
    ConfigError, Environment, RedisSettings, Secret, Sentinels, Settings, StoreSettings, Tls,
    WAIT_RANGE, WaitReplicas, invalid, service_url, within,
};
use crate::http;
use crate::roles::{all, dashboard, gateway, load, worker};
use crate::targets::value::Credentials;
use crate::targets::watch::Loaded;

/// Microservice health monitoring: API gateway, worker and dashboard in one binary.
#[derive(Debug, Parser)]
#[command(name = "svc", version, about, propagate_version = true)]
pub struct Cli {
    /// What this process does: serve a role, check a URL or send load.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the process's arguments. `Err` is the exit code once what was asked for
    /// (help, the version) or what is wrong has been printed: a usage error is one line
    /// on stderr, exit code 64 (EX_USAGE).
    pub fn parse_args() -> Result<Cli, u8> {
        Cli::try_parse().map_err(|e| {
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return 0;
            }
            // One line, not clap's usage block: the first line says what is wrong.
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!("svc: {}", first.trim_start_matches("error: "));
            64
        })
    }
}

/// What the process does, one variant per subcommand; `main` dispatches on it in a
/// single `match`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// REST API gateway: health, status, info, jobs and Prometheus metrics (default port 8080).
    Gateway(GatewayArgs),
    /// Periodic tasks and the job queue; health, status and metrics on port 8081.
    Worker(WorkerArgs),
    /// Web dashboard: live state of every service, its history and replicas (default port 3000).
    Dashboard(DashboardArgs),
    /// Every role in one process, for a laptop; embedded store unless Redis is configured.
    All(AllArgs),
    /// Exit 0 when URL answers 2xx within the timeout (the container HEALTHCHECK).
    Healthcheck(HealthcheckArgs),
    /// Send HTTP load to a URL for a while, e.g. to watch the gateway's HPA scale.
    Load(LoadArgs),
}

/// Flags of a role that serves HTTP on one port.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
    /// Port to listen on [default: the role's own port].
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Flags of `svc gateway`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub limits: LimitFlags,
}

/// How the gateway limits each client on `/api/*` (off unless `--rate-limit` is set).
#[derive(Debug, Args)]
pub struct LimitFlags {
    /// Requests per second each client may make to /api/* (0: no limit).
    #[arg(long, env = "RATE_LIMIT", default_value_t = 0)]
    pub rate_limit: u32,
    /// Requests a client may make at once after a quiet spell [default: the rate].
    #[arg(long, env = "RATE_BURST")]
    pub rate_burst: Option<u32>,
    /// Proxies (CIDRs, comma-separated) whose X-Forwarded-For names the client.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl LimitFlags {
    /// The gateway's config.
    pub fn config(&self) -> Result<gateway::Config, ConfigError> {
        let Some(per_second) = std::num::NonZeroU32::new(self.rate_limit) else {
            return Ok(gateway::Config::default());
        };
        let burst = std::num::NonZeroU32::new(self.rate_burst.unwrap_or(self.rate_limit))
            .ok_or_else(|| invalid("RATE_BURST", "must be at least 1"))?;
        if per_second.get() > 1_000_000 || burst.get() > 1_000_000 {
            return Err(invalid("RATE_LIMIT", "rate and burst are at most 1000000"));
        }
        Ok(gateway::Config {
            rate_limit: Some(crate::http::limit::RateLimit {
                per_second,
                burst,
                trusted_proxies: self.trusted_proxies.clone(),
            }),
        })
    }
}

/// Flags of `svc worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub worker: WorkerFlags,
    /// Gateway base URL, probed by the health_check task.
    #[arg(long, env = "API_GATEWAY_URL", default_value = "http://localhost:8080")]
    pub gateway_url: url::Url,
    /// Dashboard base URL, probed by the health_check task.
    #[arg(long, env = "DASHBOARD_URL", default_value = "http://localhost:3000")]
    pub dashboard_url: url::Url,
}

/// How a worker schedules and runs jobs (shared by `svc worker` and `svc all`).
#[derive(Debug, Args)]
pub struct WorkerFlags {
    /// Time between scheduler ticks: each periodic task runs once per interval, cluster-wide.
    #[arg(long, env = "WORKER_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// A job unfinished this long after delivery is taken over by another worker.
    #[arg(long, env = "VISIBILITY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub visibility_timeout: Duration,
    /// Attempts before a failing job goes to the dead-letter stream.
    #[arg(long, env = "MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u32,
    /// Jobs one worker runs at once (CPU-bound ones are further limited to one per core).
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 32)]
    pub concurrency: usize,
    /// YAML file of your own services to probe and the webhooks to notify; reloaded when it changes.
    #[arg(long = "targets", env = "TARGETS_FILE", value_name = "FILE")]
    pub targets: Option<std::path::PathBuf>,
    /// Where this worker probes from (a zone or region: lowercase letters, digits, '-'):
    /// each target is probed once per interval from each location.
    #[arg(long, env = "LOCATION", default_value = worker::DEFAULT_LOCATION)]
    pub location: String,
    /// Source address every target probe's socket binds (a multi-homed host's probe
    /// address) [default: the system's choice].
    #[arg(long, env = "PROBE_SOURCE_IP")]
    pub probe_source_ip: Option<IpAddr>,
}

/// Flags of `svc dashboard`.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Base URL of the API gateway, probed at /health/ready.
    #[arg(long, env = "API_GATEWAY_URL", default_value = "http://localhost:8080")]
    pub gateway_url: url::Url,
    /// Base URL of the worker service, probed at /health/ready.
    #[arg(
        long,
        env = "WORKER_SERVICE_URL",
        default_value = "http://localhost:8081"
    )]
    pub worker_url: url::Url,
    /// How often the page refreshes and the services are probed.
    #[arg(long, env = "REFRESH_PERIOD", default_value = "5s", value_parser = humantime::parse_duration)]
    pub refresh: Duration,
    /// YAML file of your own services (the worker's): the targets the page shows; reloaded when it changes.
    #[arg(long = "targets", env = "TARGETS_FILE", value_name = "FILE")]
    pub targets: Option<std::path::PathBuf>,
}

/// Flags of `svc all`.
#[derive(Debug, Args)]
pub struct AllArgs {
    /// Address every role listens on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port of the gateway.
    #[arg(long, default_value_t = gateway::DEFAULT_PORT)]
    pub gateway_port: u16,
    /// Port of the worker's health server.
    #[arg(long, default_value_t = worker::DEFAULT_PORT)]
    pub worker_port: u16,
    #[command(flatten)]
    pub worker: WorkerFlags,
    #[command(flatten)]
    pub limits: LimitFlags,
    /// Port of the dashboard.
    #[arg(long, default_value_t = dashboard::DEFAULT_PORT)]
    pub dashboard_port: u16,
    /// How often the dashboard refreshes and probes the other roles.
    #[arg(long, env = "REFRESH_PERIOD", default_value = "5s", value_parser = humantime::parse_duration)]
    pub refresh: Duration,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Flags of `svc healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// URL to fetch, e.g. http://127.0.0.1:8080/health/live.
    pub url: url::Url,
    /// How long to wait for the answer.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Flags of `svc load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// URL to send requests to, e.g. http://127.0.0.1:8080/api/status.
    pub url: url::Url,
    /// Closed loop: requests in flight at once. Open loop: the most in flight
    /// [default: 16 closed loop, 1024 open loop].
    #[arg(long, short = 'c', value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub concurrency: Option<u16>,
    /// How long to send.
    #[arg(long, short = 'd', default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Stop after this many requests.
    #[arg(long, short = 'n')]
    pub requests: Option<u64>,
    /// HTTP method.
    #[arg(long, short = 'X', default_value = "GET")]
    pub method: reqwest::Method,
    /// JSON body to send with each request (e.g. a job for POST /api/jobs).
    #[arg(long)]
    pub body: Option<String>,
    /// Open loop: send this many requests per second whatever the answers take, and
    /// time each from when it was due.
    #[arg(long, conflicts_with = "ramp")]
    pub rate: Option<f64>,
    /// Open loop with a rate rising linearly over the duration, e.g. 50..500.
    #[arg(long, value_parser = parse_ramp)]
    pub ramp: Option<(f64, f64)>,
    /// How long one request may take before it counts as a timeout.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Exit non-zero when more than this share of requests fail: 0.01 or 1%.
    #[arg(long, value_parser = parse_share)]
    pub max_error_rate: Option<f64>,
}

/// `FROM..TO`, two request rates.
fn parse_ramp(raw: &str) -> Result<(f64, f64), String> {
    let (from, to) = raw
        .split_once("..")
        .ok_or_else(|| format!("{raw:?} is not FROM..TO, e.g. 50..500"))?;
    let rate = |s: &str| {
        s.trim()
            .parse::<f64>()
            .map_err(|_| format!("{s:?} is not a request rate"))
    };
    Ok((rate(from)?, rate(to)?))
}

/// A share from 0 to 1, written as a fraction (0.05) or a percentage (5%).
fn parse_share(raw: &str) -> Result<f64, String> {
    let (number, scale) = match raw.strip_suffix('%') {
        Some(percent) => (percent, 100.0),
        None => (raw, 1.0),
    };
    let share = number
        .trim()
        .parse::<f64>()
        .map(|n| n / scale)
        .map_err(|_| format!("{raw:?} is not a share such as 0.05 or 5%"))?;
    if (0.0..=1.0).contains(&share) {
        Ok(share)
    } else {
        Err(format!("{raw:?} is not between 0 and 1 (0% and 100%)"))
    }
}

impl LoadArgs {
    /// The load generator's config; `progress` when stderr is a terminal.
    pub fn config(&self, progress: bool) -> Result<load::LoadConfig, ConfigError> {
        let pace = match (self.rate, self.ramp) {
            (Some(rate), _) => load::Pace::Open {
                from: rate,
                to: rate,
            },
            (None, Some((from, to))) => load::Pace::Open { from, to },
            (None, None) => load::Pace::Closed,
        };
        let concurrency = self.concurrency.map(usize::from).unwrap_or(match pace {
            load::Pace::Closed => 16,
            load::Pace::Open { .. } => load::OPEN_LOOP_CONCURRENCY,
        });
        load::LoadConfig {
            url: self.url.clone(),
            method: self.method.clone(),
            body: self.body.clone(),
            pace,
            concurrency,
            duration: self.duration,
            max_requests: self.requests,
            timeout: self.timeout,
            progress,
            json: self.json,
            max_error_rate: self.max_error_rate,
        }
        .validate()
    }
}

/// Flags every serving role shares: the store, logging, readiness and shutdown.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Redis URL, redis://[:password@]host[:port][/db] (rediss:// for TLS); wins over
    /// the REDIS_HOST family.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,
    /// Find the primary through these sentinels (host:port,host:port,...) and follow
    /// its failovers; the password and database come from the other Redis settings.
    #[arg(long, env = "REDIS_SENTINELS")]
    pub redis_sentinels: Option<String>,
    /// The name the sentinels monitor the primary under.
    #[arg(long, env = "REDIS_MASTER_NAME", default_value = "mymaster")]
    pub redis_master_name: String,
    /// The sentinels' own password, when they have one.
    #[arg(long, env = "REDIS_SENTINEL_PASSWORD", hide_env_values = true)]
    pub redis_sentinel_password: Option<Secret>,
    /// Talk to the sentinels over TLS too, trusting the same CA as for Redis.
    #[arg(long, env = "REDIS_SENTINEL_TLS")]
    pub redis_sentinel_tls: bool,
    /// Talk to Redis over TLS (rustls; the system's roots unless --redis-ca-file).
    #[arg(long, env = "REDIS_TLS")]
    pub redis_tls: bool,
    /// PEM bundle of CA certificates to trust for Redis TLS.
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// Replicas that must hold a job before POST /api/jobs answers 202: `auto` (one
    /// whenever the primary has a replica) or a number (0: never wait).
    #[arg(long, env = "REDIS_WAIT_REPLICAS", default_value = "auto")]
    pub redis_wait_replicas: WaitReplicas,
    /// How long to wait for the replicas' acknowledgement before answering 503.
    #[arg(long, env = "REDIS_WAIT_TIMEOUT", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub redis_wait_timeout: Duration,
    /// Redis host [default: localhost; `svc all` uses its embedded store when unset].
    #[arg(long, env = "REDIS_HOST")]
    pub redis_host: Option<String>,
    /// Redis port.
    #[arg(long, env = "REDIS_PORT", default_value_t = 6379)]
    pub redis_port: u16,
    /// Redis password.
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<Secret>,
    /// Redis database number.
    #[arg(long, env = "REDIS_DB", default_value_t = 0)]
    pub redis_db: i64,
    /// Prefix of the keys this system adds (the original's keys keep their names).
    #[arg(long, env = "KEY_PREFIX", default_value = "svc:")]
    pub key_prefix: String,
    /// Deployment environment: JSON logs in production, readable text in development.
    #[arg(long = "env", env = "APP_ENV", value_enum, default_value_t = Environment::Development)]
    pub environment: Environment,
    /// Log level or filter (RUST_LOG, when set, wins).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Stay ready while Redis is unreachable and serve in degraded mode.
    #[arg(long, env = "READY_WITHOUT_REDIS")]
    pub ready_without_redis: bool,
    /// After SIGTERM, keep serving (while unready) this long so routing stops first.
    #[arg(long, env = "DRAIN_DELAY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub drain_delay: Duration,
    /// After the drain delay, how long in-flight work may take to finish.
    #[arg(long, env = "GRACE_PERIOD", default_value = "20s", value_parser = humantime::parse_duration)]
    pub grace_period: Duration,
    /// Connections waiting to be accepted (the listen backlog).
    #[arg(long, env = "LISTEN_BACKLOG", default_value_t = 4096)]
    pub backlog: u32,
    /// Open connections per server thread; more wait in the backlog.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 25_000)]
    pub max_connections: usize,
    /// Requests served at once, probes and scrapes aside; beyond it a fast 503 (0: no bound).
    #[arg(long, env = "MAX_IN_FLIGHT", default_value_t = 0)]
    pub max_in_flight: usize,
    /// Serve fault injection under /faults/ on the gateway and the worker (FAULTS=on), for demos.
    #[arg(long, env = "FAULTS", value_parser = clap::builder::BoolishValueParser::new())]
    pub faults: bool,
    /// Address the dashboard probes this process at, host or host:port (announced in the
    /// heartbeat) [default: POD_IP and the port, else the listen address unless a wildcard].
    #[arg(long, env = "ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,
    /// The pod's IP (the downward API sets it), the default advertised host.
    #[arg(long, env = "POD_IP", hide = true)]
    pub pod_ip: Option<IpAddr>,
}

impl ServeArgs {
    /// The address to listen on: `--port`, else the role's `default_port`.
    pub fn listen_addr(&self, default_port: u16) -> SocketAddr {
        SocketAddr::new(self.host, self.port.unwrap_or(default_port))
    }

    /// Validates the shared flags, then binds the port (`default_port` unless one is
    /// given): a bad flag or a taken port is reported before anything else happens.
    pub fn bind(&self, default_port: u16) -> Result<(Settings, TcpListener), Error> {
        let settings = self.common.settings(true)?;
        let listener = http::bind(self.listen_addr(default_port), settings.limits.backlog)?;
        Ok((settings, listener))
    }
}

impl CommonArgs {
    /// Validated shared settings. `redis_required` is false only for `svc all`, which
    /// falls back to the embedded store when no Redis is named.
    pub fn settings(&self, redis_required: bool) -> Result<Settings, ConfigError> {
        let named =
            self.redis_url.is_some() || self.redis_host.is_some() || self.redis_sentinels.is_some();
        let store = match (&self.redis_url, &self.redis_host) {
            (Some(url), _) => StoreSettings::Redis(RedisSettings::from_url(url.expose())?),
            (None, host) if named || redis_required => {
                let host = host.clone().unwrap_or_else(|| "localhost".into());
                if host.is_empty() {
                    return Err(invalid("REDIS_HOST", "empty host"));
                }
                StoreSettings::Redis(RedisSettings {
                    db: self.redis_db,
                    password: self
                        .redis_password
                        .clone()
                        .filter(|p| !p.expose().is_empty()),
                    ..RedisSettings::new(host, self.redis_port)
                })
            }
            (None, _) => StoreSettings::Memory,
        };
        let store = match store {
            StoreSettings::Redis(redis) => StoreSettings::Redis(self.redis_extras(redis)?),
            memory => memory,
        };
        Settings {
            environment: self.environment,
            store,
            key_prefix: self.key_prefix.clone(),
            ready_without_store: self.ready_without_redis,
            store_check_period: Duration::from_secs(1),
            drain_delay: self.drain_delay,
            grace_period: self.grace_period,
            log_level: self.log_level.clone(),
            limits: crate::config::ServerLimits {
                backlog: self.backlog,
                max_connections: self.max_connections,
                max_in_flight: self.max_in_flight,
            },
            faults: self.faults,
            advertise: self
                .advertise_addr
                .clone()
                .filter(|a| !a.is_empty())
                .or_else(|| {
                    self.pod_ip.map(|ip| match ip {
                        IpAddr::V6(v6) => format!("[{v6}]"),
                        IpAddr::V4(v4) => v4.to_string(),
                    })
                }),
        }
        .validate()
    }
}

impl CommonArgs {
    /// Sentinels, TLS and the replica acknowledgement, on top of the server settings.
    fn redis_extras(&self, mut redis: RedisSettings) -> Result<RedisSettings, ConfigError> {
        if let Some(list) = &self.redis_sentinels {
            let mut sentinels = Sentinels::parse(
                list,
                &self.redis_master_name,
                self.redis_sentinel_password
                    .clone()
                    .filter(|p| !p.expose().is_empty()),
            )?;
            sentinels.tls = self.redis_sentinel_tls;
            redis.sentinels = Some(sentinels);
            // The password may come from REDIS_PASSWORD when no URL names one.
            if redis.password.is_none() {
                redis.password = self
                    .redis_password
                    .clone()
                    .filter(|p| !p.expose().is_empty());
            }
        }
        if self.redis_tls || self.redis_ca_file.is_some() {
            redis.tls = Some(Tls { ca_file: None });
        }
        if let (Some(tls), Some(file)) = (&mut redis.tls, &self.redis_ca_file) {
            if !file.is_file() {
                return Err(invalid(
                    "REDIS_CA_FILE",
                    format!("{} is not a readable file", file.display()),
                ));
            }
            tls.ca_file = Some(file.clone());
        }
        redis.wait_replicas = self.redis_wait_replicas;
        redis.wait_timeout = within("REDIS_WAIT_TIMEOUT", self.redis_wait_timeout, WAIT_RANGE)?;
        Ok(redis)
    }
}

impl WorkerArgs {
    /// The worker's config, probing the gateway and dashboard at the URLs given.
    pub fn config(&self) -> Result<worker::WorkerConfig, ConfigError> {
        self.worker
            .config(self.gateway_url.clone(), self.dashboard_url.clone())
    }
}

impl WorkerFlags {
    /// The worker's config; `gateway_url` and `dashboard_url` are where `health_check`
    /// probes.
    pub fn config(
        &self,
        gateway_url: url::Url,
        dashboard_url: url::Url,
    ) -> Result<worker::WorkerConfig, ConfigError> {
        worker::WorkerConfig {
            interval: self.interval,
            gateway_url: service_url("API_GATEWAY_URL", gateway_url)?,
            dashboard_url: service_url("DASHBOARD_URL", dashboard_url)?,
            visibility_timeout: self.visibility_timeout,
            max_attempts: self.max_attempts,
            concurrency: self.concurrency,
            location: self.location.clone(),
            probe_source_ip: self.probe_source_ip,
            targets: targets(
                self.targets.as_deref(),
                self.interval,
                Credentials::Required,
            )?,
        }
        .validate()
    }
}

/// The targets file at `path`, read and checked; `interval` and `need` as for
/// [`Loaded::read`].
fn targets(
    path: Option<&std::path::Path>,
    interval: Duration,
    need: Credentials,
) -> Result<Option<Loaded>, ConfigError> {
    path.map(|path| Loaded::read(path, interval, need))
        .transpose()
        .map_err(|e| invalid("TARGETS_FILE", e.to_string()))
}

impl DashboardArgs {
    /// The dashboard's config.
    pub fn config(&self) -> Result<dashboard::Config, ConfigError> {
        Ok(dashboard::Config {
            // The dashboard shows targets and sends nothing: it needs no credentials.
            targets: targets(
                self.targets.as_deref(),
                dashboard::TARGETS_INTERVAL,
                Credentials::Optional,
            )?,
            ..dashboard::Config::new(
                service_url("API_GATEWAY_URL", self.gateway_url.clone())?,
                service_url("WORKER_SERVICE_URL", self.worker_url.clone())?,
                self.refresh,
            )?
        })
    }
}

impl AllArgs {
    /// The ports of the roles.
    pub fn ports(&self) -> all::Ports {
        all::Ports {
            gateway: self.gateway_port,
            worker: self.worker_port,
            dashboard: self.dashboard_port,
        }
    }

    /// Validates every flag, binds the three ports, then builds the config from the
    /// ports actually bound (port 0 asks the OS for one).
    pub fn bind(&self) -> Result<(Settings, all::Config, all::Listeners), Error> {
        let settings = self.common.settings(false)?;
        let ports = self.ports();
        // Validated before binding: a bad flag is reported before a taken port.
        self.config(ports)?;
        let bind = |port: u16| http::bind((self.host, port).into(), settings.limits.backlog);
        let listeners = all::Listeners {
            gateway: bind(ports.gateway)?,
            worker: bind(ports.worker)?,
            dashboard: bind(ports.dashboard)?,
        };
        let config = self.config(listeners.ports().map_err(http::ServeError::Io)?)?;
        Ok((settings, config, listeners))
    }

    /// The config of `svc all`: its roles watch each other on loopback.
    pub fn config(&self, ports: all::Ports) -> Result<all::Config, ConfigError> {
        let url = |port: u16| {
            url::Url::parse(&format!(
                "http://{}",
                SocketAddr::new(all::watch_host(self.host), port)
            ))
            .map_err(|e| invalid("HOST", e.to_string()))
        };
        let worker = self
            .worker
            .config(url(ports.gateway)?, url(ports.dashboard)?)?;
        Ok(all::Config {
            gateway: self.limits.config()?,
            dashboard: dashboard::Config {
                targets: worker.targets.clone(),
                ..dashboard::Config::new(url(ports.gateway)?, url(ports.worker)?, self.refresh)?
            },
            worker,
        })
    }
}
