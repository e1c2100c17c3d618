//! The Redis backend, on deadpool-redis.
//!
//! Short commands share one multiplexed connection taken from the pool: redis-rs
//! pipelines concurrent commands on it, so a command costs one round trip. Blocking
//! reads (`XREADGROUP BLOCK`) and consumer-group scans take a pooled connection of their
//! own; the pool checks a connection with a PING only when it has sat idle, so the hot
//! path pays no extra round trip.
//!
//! Nothing here waits for Redis at start-up. A connection is made when first needed;
//! when a command finds it broken or unresponsive it is dropped and the next command
//! takes a fresh one, one reconnect at a time however many callers are waiting, so the
//! store reconnects by itself when Redis returns. Connections are made on the runtime
//! that created the store (the process's), never on an HTTP worker's runtime that ends
//! before the process does. Every operation is bounded by [`OP_TIMEOUT`].

use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use deadpool::managed::{self, Metrics, RecycleResult};
use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::streams::{
    StreamAutoClaimReply, StreamId, StreamPendingReply, StreamReadReply,
};
use deadpool_redis::redis::{self, AsyncConnectionConfig, ErrorKind, IntoConnectionInfo};
use tokio::runtime::Handle;

use super::breaker::Breaker;
use super::{
    Delivery, HealthSample, INCIDENTS_KEPT, INCIDENTS_KEPT_DAYS, Incident, Instance, LOST_KEPT,
    MAX_QUEUE, QueueStats, Reclaimed, ServiceState, Store, StoreError, TargetReport, TargetSample,
    keys, targets,
};
use crate::clock::{millis, unix_now};
use crate::config::{RedisSettings, WaitReplicas};
use crate::jobs::{JobRecord, JobState, RECORD_TTL, mark_dead};
use crate::service::Service;

/// Upper bound of one store operation, including getting a connection.
pub const OP_TIMEOUT: Duration = Duration::from_secs(1);

/// A pooled connection used more recently than this is handed out without a PING.
const RECHECK_AFTER_IDLE: Duration = Duration::from_secs(10);

/// Makes the pool's connections: deadpool-redis' manager for one server, or redis-rs'
/// sentinel client for the primary the sentinels name now. (deadpool-redis' own
/// sentinel manager takes no connection config, so redis-rs' default 500 ms response
/// timeout would cut every blocking read of the job queue.) Either way a connection is
/// checked with a PING only when it has sat idle.
enum Manager {
    Server(deadpool_redis::Manager),
    Sentinel {
        client: tokio::sync::Mutex<redis::sentinel::SentinelClient>,
        config: AsyncConnectionConfig,
    },
}

impl managed::Manager for Manager {
    type Type = MultiplexedConnection;
    type Error = redis::RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, redis::RedisError> {
        match self {
            Manager::Server(m) => m.create().await,
            // Asks the sentinels which node is the primary now.
            Manager::Sentinel { client, config } => {
                client
                    .lock()
                    .await
                    .get_async_connection_with_config(config)
                    .await
            }
        }
    }

    async fn recycle(
        &self,
        conn: &mut MultiplexedConnection,
        metrics: &Metrics,
    ) -> RecycleResult<redis::RedisError> {
        // A multiplexed connection that was used a moment ago is known to work; a
        // command that finds it dead drops it anyway.
        if metrics.last_used() < RECHECK_AFTER_IDLE {
            return Ok(());
        }
        match self {
            Manager::Server(m) => m.recycle(conn, metrics).await,
            Manager::Sentinel { .. } => {
                // A demoted primary answers PING too: ROLE says whether it still leads.
                let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(conn).await?;
                match role.first() {
                    Some(redis::Value::BulkString(r)) if r.as_slice() == b"master" => Ok(()),
                    _ => Err(managed::RecycleError::message("no longer the primary")),
                }
            }
        }
    }
}

type Pool = managed::Pool<Manager>;

/// Redis-backed store.
pub struct RedisStore {
    pool: Pool,
    shared: RwLock<Option<MultiplexedConnection>>,
    /// Held while one caller reconnects; the others wait for its connection.
    reconnect: tokio::sync::Mutex<()>,
    /// The runtime connections are made on (the one that created the store).
    runtime: Option<Handle>,
    /// The same server without the password, to tell "wrong password" from "no
    /// password needed" when a login fails.
    without_password: Option<redis::Client>,
    /// Replicas that must acknowledge an enqueued job, and how long to wait for them.
    wait: (WaitReplicas, Duration),
    /// When the primary's replica count was last read, and what it was (for
    /// `WaitReplicas::Auto`).
    replicas: std::sync::Mutex<Option<(std::time::Instant, u32)>>,
    /// `host:port`, for messages.
    target: String,
    /// Fails operations fast while the server does not answer.
    breaker: Breaker,
    prefix: String,
}

/// A command or a pipeline.
trait Request: Sync {
    fn send<T: redis::FromRedisValue>(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> impl Future<Output = redis::RedisResult<T>> + Send;
}

impl Request for redis::Cmd {
    fn send<T: redis::FromRedisValue>(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> impl Future<Output = redis::RedisResult<T>> + Send {
        self.query_async(conn)
    }
}

impl Request for redis::Pipeline {
    fn send<T: redis::FromRedisValue>(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> impl Future<Output = redis::RedisResult<T>> + Send {
        self.query_async(conn)
    }
}

/// Whether an operation may run twice (a retry after a dropped connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    Safe,
    Never,
}

/// The job stream, its consumer group and the dead-letter stream.
const JOBS: &str = "jobs";
const GROUP: &str = "workers";
const DEAD_LETTERS: &str = "jobs:dead";

/// Adds a job unless the stream is full: record and stream entry in one step. A job
/// whose record exists was added already (this is a retry), so adding is idempotent.
static ENQUEUE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"if redis.call('EXISTS', KEYS[2]) == 1 then return 1 end
          if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
          redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
          redis.call('XADD', KEYS[1], '*', 'job', ARGV[4])
          return 1",
    )
});

/// Rolls what a counter (KEYS[1]) gained since the last roll-up (seen in KEYS[2]) into
/// minute ARGV[1] of a series (KEYS[3]), in one step: a retry adds nothing twice.
static ROLL_UP: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"local raw = redis.call('GET', KEYS[1])
          local current = tonumber(raw or '0')
          if current == nil then
            return redis.error_reply('ERR counter ' .. KEYS[1] .. ' is not a number')
          end
          current = math.floor(current)
          local seen = math.floor(tonumber(redis.call('GET', KEYS[2]) or '0') or 0)
          local delta = current - seen
          if current < seen then delta = current end
          if delta > 0 then
            redis.call('HINCRBY', KEYS[3], ARGV[1], delta)
            redis.call('EXPIRE', KEYS[3], ARGV[2])
          end
          redis.call('SET', KEYS[2], current)
          return delta",
    )
});

/// Sets a target's state (KEYS[1]) if it is still ARGV[1] (empty: absent) and, when
/// ARGV[4] holds a sample, adds it to the newest samples (KEYS[2]) and counts it in
/// its minute (KEYS[3], field prefix ARGV[6]) and hour (KEYS[4], prefix ARGV[7]).
static PUT_TARGET: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
          redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
          if ARGV[4] ~= '' then
            redis.call('LPUSH', KEYS[2], ARGV[4])
            redis.call('LTRIM', KEYS[2], 0, ARGV[5])
            redis.call('EXPIRE', KEYS[2], ARGV[3])
            redis.call('HINCRBY', KEYS[3], ARGV[6] .. 'c', 1)
            redis.call('HINCRBY', KEYS[3], ARGV[6] .. 'u', ARGV[8])
            redis.call('EXPIRE', KEYS[3], ARGV[9])
            redis.call('HINCRBY', KEYS[4], ARGV[7] .. 'c', 1)
            redis.call('HINCRBY', KEYS[4], ARGV[7] .. 'u', ARGV[8])
            redis.call('EXPIRE', KEYS[4], ARGV[3])
          end
          return 1",
    )
});

/// How long a series, a health history or the instance set outlives its last write:
/// longer than the longest window the dashboard shows (24 h).
const HISTORY_TTL_SECONDS: i64 = 25 * 3600;

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.target)
            .field("status", &self.pool.status())
            .finish()
    }
}

impl RedisStore {
    /// Builds the pool; connects lazily, on the current runtime (if any) whoever asks.
    /// `prefix` starts every key this system adds.
    pub fn new(settings: &RedisSettings, prefix: &str) -> Result<Self, StoreError> {
        let unusable = |e: redis::RedisError| StoreError::Unavailable(e.to_string());
        if settings.tls.is_some() {
            // redis-rs' rustls takes its crypto from the process default.
            crate::tls::install();
        }
        let mut redis_info = redis::RedisConnectionInfo::default().set_db(settings.db);
        if let Some(user) = &settings.username {
            redis_info = redis_info.set_username(user);
        }
        let without_password = redis_info.clone();
        if let Some(password) = &settings.password {
            redis_info = redis_info.set_password(password.expose());
        }
        let (manager, target, without_password) = match &settings.sentinels {
            None => {
                let addr = match &settings.tls {
                    Some(_) => redis::ConnectionAddr::TcpTls {
                        host: settings.host.clone(),
                        port: settings.port,
                        insecure: false,
                        tls_params: None,
                    },
                    None => redis::ConnectionAddr::Tcp(settings.host.clone(), settings.port),
                };
                let info = |redis_info: redis::RedisConnectionInfo| -> Result<_, StoreError> {
                    let info = addr
                        .clone()
                        .into_connection_info()
                        .map_err(unusable)?
                        .set_redis_settings(redis_info);
                    match settings.tls.as_ref().and_then(|t| t.ca_file.as_ref()) {
                        None => Ok(info),
                        Some(file) => {
                            let root_cert = std::fs::read(file).map_err(|e| {
                                StoreError::Unavailable(format!("{}: {e}", file.display()))
                            })?;
                            let certificates = redis::TlsCertificates {
                                client_tls: None,
                                root_cert: Some(root_cert),
                            };
                            redis::Client::build_with_tls(info, certificates)
                                .map(|c| c.get_connection_info().clone())
                                .map_err(unusable)
                        }
                    }
                };
                let connection = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(OP_TIMEOUT))
                    .set_response_timeout(None);
                let manager =
                    deadpool_redis::Manager::new_with_config(info(redis_info)?, connection)
                        .map_err(unusable)?;
                let without_password = match settings.password {
                    Some(_) => redis::Client::open(info(without_password)?).ok(),
                    None => None,
                };
                (
                    Manager::Server(manager),
                    format!("{}:{}", settings.host, settings.port),
                    without_password,
                )
            }
            Some(sentinels) => {
                let mut sentinel_info = redis::RedisConnectionInfo::default();
                if let Some(password) = &sentinels.password {
                    sentinel_info = sentinel_info.set_password(password.expose());
                }
                let mut nodes = Vec::with_capacity(sentinels.addrs.len());
                for (host, port) in &sentinels.addrs {
                    nodes.push(
                        redis::ConnectionAddr::Tcp(host.clone(), *port)
                            .into_connection_info()
                            .map_err(unusable)?
                            .set_redis_settings(sentinel_info.clone()),
                    );
                }
                let mut node = redis::sentinel::SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(redis_info.clone());
                if settings.tls.is_some() {
                    node = node.set_tls_mode(redis::TlsMode::Secure);
                }
                let client = redis::sentinel::SentinelClient::build(
                    nodes,
                    sentinels.master.clone(),
                    Some(node),
                    redis::sentinel::SentinelServerType::Master,
                )
                .map_err(unusable)?;
                let manager = Manager::Sentinel {
                    client: tokio::sync::Mutex::new(client),
                    config: AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(OP_TIMEOUT))
                        .set_response_timeout(None),
                };
                let addrs: Vec<String> = sentinels
                    .addrs
                    .iter()
                    .map(|(h, p)| format!("{h}:{p}"))
                    .collect();
                let target = format!(
                    "the primary {:?} of the sentinels {}",
                    sentinels.master,
                    addrs.join(",")
                );
                (manager, target, None)
            }
        };
        let pool = Pool::builder(manager)
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(OP_TIMEOUT))
            .create_timeout(Some(OP_TIMEOUT))
            .recycle_timeout(Some(OP_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(RedisStore {
            pool,
            shared: RwLock::new(None),
            reconnect: tokio::sync::Mutex::new(()),
            runtime: Handle::try_current().ok(),
            without_password,
            wait: (settings.wait_replicas, settings.wait_timeout),
            replicas: std::sync::Mutex::new(None),
            breaker: Breaker::new(&target),
            target,
            prefix: prefix.to_owned(),
        })
    }

    /// A pooled connection, made on the store's runtime.
    async fn pooled(&self) -> Result<managed::Object<Manager>, StoreError> {
        let pool = self.pool.clone();
        let get = async move { pool.get().await };
        let got = match &self.runtime {
            Some(runtime) => runtime
                .spawn(get)
                .await
                .map_err(|e| StoreError::Unavailable(format!("connecting failed: {e}")))?,
            None => get.await,
        };
        match got {
            Ok(conn) => Ok(conn),
            Err(managed::PoolError::Backend(e)) => Err(self.explain(e).await),
            Err(managed::PoolError::Timeout(_)) => Err(StoreError::Timeout(OP_TIMEOUT)),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }

    /// What a failed connection attempt means, in words an operator can act on.
    async fn explain(&self, e: redis::RedisError) -> StoreError {
        if e.kind() == ErrorKind::AuthenticationFailed {
            // redis-rs says only "failed": find out whether any password was needed.
            if let Some(client) = &self.without_password {
                let open = async {
                    let mut conn = client.get_multiplexed_async_connection().await?;
                    redis::cmd("PING").query_async::<String>(&mut conn).await
                };
                if let Ok(Ok(_)) = tokio::time::timeout(OP_TIMEOUT, open).await {
                    return StoreError::Unavailable(format!(
                        "authentication failed: {} has no password set; remove it from \
                         REDIS_URL / REDIS_PASSWORD",
                        self.target
                    ));
                }
            }
            return StoreError::Unavailable(format!(
                "authentication failed: {} refused the password (or user)",
                self.target
            ));
        }
        classify(e, &self.target)
    }

    /// The shared connection; when there is none, one caller makes it and the others
    /// wait for that one.
    async fn shared(&self) -> Result<MultiplexedConnection, StoreError> {
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let _reconnecting = self.reconnect.lock().await;
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let conn = managed::Object::take(self.pooled().await?);
        *self.shared.write().unwrap_or_else(PoisonError::into_inner) = Some(conn.clone());
        Ok(conn)
    }

    fn current(&self) -> Option<MultiplexedConnection> {
        self.shared
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn drop_shared(&self) {
        *self.shared.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Runs a command or pipeline that may safely run twice on the shared connection.
    async fn query<T: redis::FromRedisValue>(&self, req: &impl Request) -> Result<T, StoreError> {
        self.run(Retry::Safe, |mut c| async move { req.send(&mut c).await })
            .await
    }

    /// Runs a command or pipeline that must not run twice (INCR, LPUSH, ...).
    async fn query_once<T: redis::FromRedisValue>(
        &self,
        req: &impl Request,
    ) -> Result<T, StoreError> {
        self.run(Retry::Never, |mut c| async move { req.send(&mut c).await })
            .await
    }

    /// Runs `op` on the shared connection, within [`OP_TIMEOUT`].
    async fn run<T, F, Fut>(&self, retry: Retry, op: F) -> Result<T, StoreError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.bounded(async {
            match op(self.shared().await?).await {
                // The shared connection died while idle (Redis restarted between two
                // uses) and nothing noticed yet: a fresh one will do, when running the
                // operation twice is harmless.
                Err(e) if retry == Retry::Safe && e.is_connection_dropped() => {
                    self.drop_shared();
                    op(self.shared().await?)
                        .await
                        .map_err(|e| classify(e, &self.target))
                }
                result => result.map_err(|e| classify(e, &self.target)),
            }
        })
        .await
    }

    /// Bounds `op` by [`OP_TIMEOUT`]; a connection that failed or hung is dropped so
    /// the next operation reconnects.
    async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let permit = self.breaker.permit()?;
        let result = tokio::time::timeout(OP_TIMEOUT, op)
            .await
            .unwrap_or(Err(StoreError::Timeout(OP_TIMEOUT)));
        self.breaker.record(permit, &result);
        if result.as_ref().is_err_and(StoreError::is_connection) {
            self.drop_shared();
        }
        result
    }
}

/// The delivery a stream entry stands for (`job_id` is `None` when it carries none).
fn delivery(entry: StreamId) -> Delivery {
    Delivery {
        job_id: entry.get::<String>("job"),
        entry: entry.id,
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Command(e.to_string()))
}

/// Parses stored JSON; entries that do not parse (written by another version) are
/// skipped, with a debug line, rather than failing the whole read.
fn from_json<T: serde::de::DeserializeOwned>(key: &str, raw: Vec<String>) -> Vec<T> {
    raw.iter()
        .filter_map(|r| match serde_json::from_str(r) {
            Ok(value) => Some(value),
            Err(e) => {
                tracing::debug!(key, error = %e, "skipped an entry this version cannot read");
                None
            }
        })
        .collect()
}

/// A reply as `T`; `None` when it is not one (a value another program wrote).
fn parse<T: redis::FromRedisValue>(value: redis::Value) -> Option<T> {
    match value {
        redis::Value::Nil => None,
        value => T::from_redis_value(value).ok(),
    }
}

/// Connection failures say which (refused, authentication, lost); server-side errors
/// (wrong type, ...) are command errors.
fn classify(e: redis::RedisError, target: &str) -> StoreError {
    if e.code() == Some("READONLY") {
        // The node this connection reached was demoted: a failover is under way.
        StoreError::Unavailable(format!(
            "{target}: connected to a replica, not the primary (failover under way?)"
        ))
    } else if matches!(
        e.kind(),
        ErrorKind::MasterNameNotFoundBySentinel
            | ErrorKind::NoValidReplicasFoundBySentinel
            | ErrorKind::EmptySentinelList
    ) {
        StoreError::Unavailable(format!("no primary known: {target}: {e}"))
    } else if e.is_connection_refusal() {
        StoreError::Unavailable(format!("connection refused by {target}"))
    } else if e.code() == Some("NOAUTH") {
        StoreError::Unavailable(format!(
            "authentication required: {target} needs a password (REDIS_PASSWORD or REDIS_URL)"
        ))
    } else if e.kind() == ErrorKind::AuthenticationFailed || e.code() == Some("WRONGPASS") {
        StoreError::Unavailable(format!(
            "authentication failed: {target} refused the password (or user)"
        ))
    } else if e.is_timeout() {
        StoreError::Timeout(OP_TIMEOUT)
    } else if e.is_io_error() || e.is_connection_dropped() {
        StoreError::Unavailable(format!("connection to {target} lost: {e}"))
    } else {
        StoreError::Command(e.to_string())
    }
}

#[async_trait]
impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.query::<String>(&redis::cmd("PING")).await.map(drop)
    }

    async fn incr(&self, key: &str) -> Result<i64, StoreError> {
        self.query_once(redis::cmd("INCR").arg(key))
            .await
            .map_err(|e| e.for_key(key))
    }

    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.query(redis::cmd("GET").arg(key))
            .await
            .map_err(|e| e.for_key(key))
    }

    async fn set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.query(redis::cmd("SET").arg(key).arg(value)).await
    }

    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let set: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(self.key(key))
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(ttl)),
            )
            .await?;
        Ok(set.is_some())
    }

    async fn heartbeat(&self, instance: &Instance, ttl: Duration) -> Result<(), StoreError> {
        let key = self.key("instances");
        let now = unix_now();
        let mut pipe = redis::pipe();
        // Expired beats stay a while: they are the lost instances.
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(now - LOST_KEPT.as_secs_f64())
            .ignore()
            .cmd("ZADD")
            .arg(&key)
            .arg(now + ttl.as_secs_f64())
            .arg(to_json(instance)?)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(HISTORY_TTL_SECONDS)
            .ignore();
        self.query(&pipe).await
    }

    async fn instances(&self) -> Result<Vec<Instance>, StoreError> {
        let key = self.key("instances");
        let raw: Vec<String> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&key)
                    .arg(format!("({}", unix_now()))
                    .arg("+inf"),
            )
            .await
            .map_err(|e| e.for_key(&key))?;
        Ok(from_json(&key, raw))
    }

    async fn depart(&self, instance: &Instance) -> Result<(), StoreError> {
        let key = self.key("instances");
        self.query(redis::cmd("ZREM").arg(&key).arg(to_json(instance)?))
            .await
            .map(|_: i64| ())
    }

    async fn lost_instances(&self, window: Duration) -> Result<Vec<(Instance, f64)>, StoreError> {
        let key = self.key("instances");
        let now = unix_now();
        let raw: Vec<(String, f64)> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&key)
                    .arg(now - window.min(LOST_KEPT).as_secs_f64())
                    .arg(now)
                    .arg("WITHSCORES"),
            )
            .await
            .map_err(|e| e.for_key(&key))?;
        Ok(raw
            .into_iter()
            .filter_map(|(json, expired)| {
                from_json::<Instance>(&key, vec![json])
                    .pop()
                    .map(|i| (i, expired))
            })
            .collect())
    }

    async fn state_change(&self, change: &Incident) -> Result<(), StoreError> {
        let data = self.key("incidents");
        let order = self.key("incidents:by_start");
        let open = self.key("incidents:open");
        let service = change.service.as_str();
        let open_id: Option<String> = self
            .query(redis::cmd("HGET").arg(&open).arg(service))
            .await
            .map_err(|e| e.for_key(&open))?;
        let current: Option<Incident> = match &open_id {
            Some(id) => {
                let raw: Option<String> = self
                    .query(redis::cmd("HGET").arg(&data).arg(id))
                    .await
                    .map_err(|e| e.for_key(&data))?;
                raw.and_then(|r| from_json(&data, vec![r]).pop())
            }
            None => None,
        };
        match &current {
            Some(open) if open.to == change.to => return Ok(()),
            None if change.to == ServiceState::Healthy => return Ok(()),
            _ => {}
        }
        let ttl = (INCIDENTS_KEPT_DAYS * 86400.0) as i64 + 86400;
        let mut pipe = redis::pipe();
        pipe.atomic();
        // The id as stored: one rebuilt from parsed JSON could differ in the last
        // digit of its time.
        if let (Some(mut ended), Some(id)) = (current, open_id) {
            ended.ended_at = Some(change.started_at.max(ended.started_at));
            pipe.cmd("HSET")
                .arg(&data)
                .arg(id)
                .arg(to_json(&ended)?)
                .ignore();
        }
        if change.to == ServiceState::Healthy {
            pipe.cmd("HDEL").arg(&open).arg(service).ignore();
        } else {
            let opened = Incident {
                ended_at: None,
                ..change.clone()
            };
            pipe.cmd("HSET")
                .arg(&data)
                .arg(opened.id())
                .arg(to_json(&opened)?)
                .ignore()
                .cmd("ZADD")
                .arg(&order)
                .arg(opened.started_at)
                .arg(opened.id())
                .ignore()
                .cmd("HSET")
                .arg(&open)
                .arg(service)
                .arg(opened.id())
                .ignore();
        }
        for key in [&data, &order, &open] {
            pipe.cmd("EXPIRE").arg(key).arg(ttl).ignore();
        }
        self.query_once::<()>(&pipe).await?;
        // Retention: older than the kept days, or beyond the kept count.
        let cutoff = unix_now() - INCIDENTS_KEPT_DAYS * 86400.0;
        let mut old: Vec<String> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&order)
                    .arg("-inf")
                    .arg(format!("({cutoff}")),
            )
            .await?;
        let count: usize = self.query(redis::cmd("ZCARD").arg(&order)).await?;
        if count > INCIDENTS_KEPT + old.len() {
            let extra: Vec<String> = self
                .query(
                    redis::cmd("ZRANGE")
                        .arg(&order)
                        .arg(0)
                        .arg(count - INCIDENTS_KEPT - 1),
                )
                .await?;
            old.extend(extra);
        }
        if !old.is_empty() {
            let mut pipe = redis::pipe();
            pipe.cmd("HDEL")
                .arg(&data)
                .arg(&old)
                .ignore()
                .cmd("ZREM")
                .arg(&order)
                .arg(&old)
                .ignore();
            self.query::<()>(&pipe).await?;
        }
        Ok(())
    }

    async fn incidents(&self, limit: usize) -> Result<Vec<Incident>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let data = self.key("incidents");
        let order = self.key("incidents:by_start");
        let ids: Vec<String> = self
            .query(redis::cmd("ZREVRANGE").arg(&order).arg(0).arg(limit - 1))
            .await
            .map_err(|e| e.for_key(&order))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<Option<String>> = self
            .query(redis::cmd("HMGET").arg(&data).arg(&ids))
            .await
            .map_err(|e| e.for_key(&data))?;
        Ok(from_json(&data, raw.into_iter().flatten().collect()))
    }

    async fn record_health(&self, sample: &HealthSample, keep: usize) -> Result<(), StoreError> {
        let key = self.key(&format!("health:{}", sample.service.as_str()));
        let mut pipe = redis::pipe();
        pipe.cmd("LPUSH")
            .arg(&key)
            .arg(to_json(sample)?)
            .ignore()
            .cmd("LTRIM")
            .arg(&key)
            .arg(0)
            .arg(keep.saturating_sub(1))
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(HISTORY_TTL_SECONDS)
            .ignore();
        self.query_once(&pipe).await
    }

    async fn health_history(
        &self,
        service: Service,
        limit: usize,
    ) -> Result<Vec<HealthSample>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.key(&format!("health:{}", service.as_str()));
        let raw: Vec<String> = self
            .query(redis::cmd("LRANGE").arg(&key).arg(0).arg(limit - 1))
            .await
            .map_err(|e| e.for_key(&key))?;
        Ok(from_json(&key, raw))
    }

    async fn series_add(&self, series: &str, minute: i64, delta: i64) -> Result<(), StoreError> {
        self.series_write("HINCRBY", series, minute, delta, Retry::Never)
            .await
    }

    async fn series_set(&self, series: &str, minute: i64, value: i64) -> Result<(), StoreError> {
        self.series_write("HSET", series, minute, value, Retry::Safe)
            .await
    }

    async fn roll_up(&self, counter: &str, series: &str, minute: i64) -> Result<i64, StoreError> {
        let mut invocation = ROLL_UP.prepare_invoke();
        invocation
            .key(counter)
            .key(self.key(&format!("rollup:{counter}")))
            .key(self.key(&format!("series:{series}")))
            .arg(minute)
            .arg(HISTORY_TTL_SECONDS);
        let invocation = &invocation;
        // The script is idempotent: running it twice adds nothing twice.
        self.run(Retry::Safe, |mut c| async move {
            invocation.invoke_async(&mut c).await
        })
        .await
        .map_err(|e| e.for_key(counter))
    }

    async fn series(&self, series: &str, since: i64) -> Result<Vec<(i64, i64)>, StoreError> {
        let key = self.key(&format!("series:{series}"));
        let all: Vec<(i64, i64)> = self
            .query(redis::cmd("HGETALL").arg(&key))
            .await
            .map_err(|e| e.for_key(&key))?;
        let mut points: Vec<_> = all.into_iter().filter(|(m, _)| *m >= since).collect();
        points.sort_unstable();
        Ok(points)
    }

    async fn series_trim(&self, series: &str, before: i64) -> Result<usize, StoreError> {
        let key = self.key(&format!("series:{series}"));
        let minutes: Vec<String> = self
            .query(redis::cmd("HKEYS").arg(&key))
            .await
            .map_err(|e| e.for_key(&key))?;
        // A field that is no minute was not written by this system: it goes too.
        let old: Vec<String> = minutes
            .into_iter()
            .filter(|m| m.parse::<i64>().map_or(true, |m| m < before))
            .collect();
        if old.is_empty() {
            return Ok(0);
        }
        self.query(redis::cmd("HDEL").arg(&key).arg(&old)).await
    }

    async fn target_state(&self, name: &str) -> Result<Option<String>, StoreError> {
        let key = self.key(&format!("target:{name}"));
        self.query(redis::cmd("GET").arg(&key))
            .await
            .map_err(|e| e.for_key(&key))
    }

    async fn put_target_state(
        &self,
        name: &str,
        seen: Option<&str>,
        state: &str,
        sample: Option<&TargetSample>,
    ) -> Result<bool, StoreError> {
        let key = self.key(&format!("target:{name}"));
        let (hour, minute_field, day, hour_field) =
            targets::buckets(sample.map_or(0.0, |s| s.timestamp));
        let mut invocation = PUT_TARGET.prepare_invoke();
        invocation
            .key(&key)
            .key(format!("{key}:samples"))
            .key(format!("{key}:m:{hour}"))
            .key(format!("{key}:h:{day}"))
            .arg(seen.unwrap_or(""))
            .arg(state)
            .arg(targets::HOURS_KEPT.as_secs())
            .arg(sample.map(to_json).transpose()?.unwrap_or_default())
            .arg(targets::SAMPLES_KEPT - 1)
            .arg(minute_field)
            .arg(hour_field)
            .arg(i64::from(
                sample.is_some_and(|s| s.status != ServiceState::Down),
            ))
            .arg(targets::MINUTES_KEPT.as_secs());
        let invocation = &invocation;
        // A compare-and-set: run twice, the second finds the state changed and
        // writes nothing.
        let written: i64 = self
            .run(Retry::Safe, |mut c| async move {
                invocation.invoke_async(&mut c).await
            })
            .await
            .map_err(|e| e.for_key(&key))?;
        Ok(written == 1)
    }

    async fn target_reports(
        &self,
        names: &[String],
        now: f64,
    ) -> Result<Vec<TargetReport>, StoreError> {
        let (hour, _, day, _) = targets::buckets(now);
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for name in names {
            let key = self.key(&format!("target:{name}"));
            pipe.cmd("GET").arg(&key);
            pipe.cmd("LRANGE")
                .arg(format!("{key}:samples"))
                .arg(0)
                .arg(-1);
            for h in [hour - 1, hour] {
                pipe.cmd("HGETALL").arg(format!("{key}:m:{h}"));
            }
            for d in [day - 1, day] {
                pipe.cmd("HGETALL").arg(format!("{key}:h:{d}"));
            }
        }
        let replies: Vec<redis::RedisResult<redis::Value>> = self.query(&pipe).await?;
        let mut replies = replies.into_iter();
        let mut reports = Vec::with_capacity(names.len());
        for name in names {
            let mut errors = Vec::new();
            let mut next = |what: &str| -> redis::Value {
                match replies.next() {
                    Some(Ok(value)) => value,
                    Some(Err(e)) => {
                        errors.push(format!("{what}: {e}"));
                        redis::Value::Nil
                    }
                    None => redis::Value::Nil,
                }
            };
            let state: Option<String> = parse(next("state"));
            let samples: Vec<String> = parse(next("samples")).unwrap_or_default();
            let mut minutes = Vec::new();
            for h in [hour - 1, hour] {
                let fields: Vec<(String, i64)> = parse(next("minutes")).unwrap_or_default();
                minutes.extend(targets::tallies(h * 60, &fields));
            }
            let mut hours = Vec::new();
            for d in [day - 1, day] {
                let fields: Vec<(String, i64)> = parse(next("hours")).unwrap_or_default();
                hours.extend(targets::tallies(d * 24, &fields));
            }
            let mut report =
                targets::report(name, state.as_deref(), &samples, &minutes, &hours, now);
            if !errors.is_empty() {
                let key = self.key(&format!("target:{name}"));
                report.error = Some(format!("{key}: {}", errors.join("; ")));
            }
            reports.push(report);
        }
        Ok(reports)
    }

    async fn enqueue(&self, job: &JobRecord) -> Result<bool, StoreError> {
        let mut invocation = ENQUEUE.prepare_invoke();
        invocation
            .key(self.key(JOBS))
            .key(self.key(&format!("job:{}", job.id)))
            .arg(MAX_QUEUE)
            .arg(job.encode())
            .arg(millis(RECORD_TTL))
            .arg(&job.id);
        let invocation = &invocation;
        let needed = self.replicas_needed().await?;
        if needed == 0 {
            let added: i64 = self
                .run(Retry::Safe, |mut c| async move {
                    invocation.invoke_async(&mut c).await
                })
                .await?;
            return Ok(added == 1);
        }
        // WAIT blocks the connection it runs on until the replicas answer: a pooled
        // connection of its own, not the shared one every other command uses.
        let (_, timeout) = self.wait;
        let target = &self.target;
        let run = async {
            let mut pooled = self.pooled().await?;
            let conn: &mut MultiplexedConnection = &mut pooled;
            let outcome = async {
                let added: i64 = invocation.invoke_async(conn).await?;
                if added == 0 {
                    return Ok(None);
                }
                let acked: u32 = redis::cmd("WAIT")
                    .arg(needed)
                    .arg(millis(timeout))
                    .query_async(conn)
                    .await?;
                Ok(Some(acked))
            }
            .await
            .map_err(|e| classify(e, target));
            if outcome.as_ref().is_err_and(StoreError::is_connection) {
                drop(managed::Object::take(pooled));
            }
            outcome
        };
        match tokio::time::timeout(OP_TIMEOUT + timeout, run)
            .await
            .unwrap_or(Err(StoreError::Timeout(OP_TIMEOUT + timeout)))?
        {
            None => Ok(false),
            Some(acked) if acked >= needed => Ok(true),
            Some(acked) => Err(StoreError::NotReplicated(format!(
                "job {} reached the primary, but {acked} of {needed} replicas acknowledged it \
                 within {timeout:?}: it may be lost if the primary fails now",
                job.id
            ))),
        }
    }

    async fn receive(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, StoreError> {
        let key = self.key(JOBS);
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(millis(wait))
            .arg("STREAMS")
            .arg(&key)
            .arg(">");
        // A blocking read holds its connection: it gets a pooled one of its own, not
        // the shared connection every short command uses.
        let reply: Option<StreamReadReply> = self.with_group(&read, wait + OP_TIMEOUT).await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(delivery)
            .collect())
    }

    async fn reclaim(
        &self,
        consumer: &str,
        idle: Duration,
        max: usize,
        cursor: &str,
    ) -> Result<Reclaimed, StoreError> {
        let mut claim = redis::cmd("XAUTOCLAIM");
        claim
            .arg(self.key(JOBS))
            .arg(GROUP)
            .arg(consumer)
            .arg(millis(idle))
            .arg(cursor)
            .arg("COUNT")
            .arg(max.max(1));
        let reply: StreamAutoClaimReply = self.with_group(&claim, OP_TIMEOUT).await?;
        Ok(Reclaimed {
            deliveries: reply.claimed.into_iter().map(delivery).collect(),
            cursor: reply.next_stream_id,
        })
    }

    async fn keep_alive(&self, consumer: &str, delivery: &Delivery) -> Result<(), StoreError> {
        // XCLAIM to the same consumer with JUSTID resets the entry's idle time without
        // counting a delivery.
        let mut claim = redis::cmd("XCLAIM");
        claim
            .arg(self.key(JOBS))
            .arg(GROUP)
            .arg(consumer)
            .arg(0)
            .arg(&delivery.entry)
            .arg("JUSTID");
        self.query::<Vec<String>>(&claim).await.map(drop)
    }

    async fn save_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        self.query(
            redis::cmd("SET")
                .arg(self.key(&format!("job:{}", job.id)))
                .arg(job.encode())
                .arg("PX")
                .arg(millis(RECORD_TTL)),
        )
        .await
    }

    async fn load_job(&self, id: &str) -> Result<Option<String>, StoreError> {
        let key = self.key(&format!("job:{id}"));
        self.query(redis::cmd("GET").arg(&key))
            .await
            .map_err(|e| e.for_key(&key))
    }

    async fn finish(&self, delivery: &Delivery, job: &JobRecord) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(self.key(&format!("job:{}", job.id)))
            .arg(job.encode())
            .arg("PX")
            .arg(millis(RECORD_TTL))
            .ignore();
        match job.state {
            JobState::Done => {
                let task = job.spec.task_type().as_str();
                pipe.cmd("INCR")
                    .arg(keys::worker_tasks(task))
                    .ignore()
                    .cmd("SET")
                    .arg(keys::WORKER_LAST_TASK)
                    .arg(task)
                    .ignore()
                    .cmd("SET")
                    .arg(keys::WORKER_LAST_TASK_TIME)
                    .arg(job.finished_at.unwrap_or_else(unix_now))
                    .ignore();
            }
            JobState::Dead => {
                pipe.cmd("XADD")
                    .arg(self.key(DEAD_LETTERS))
                    .arg("*")
                    .arg("job")
                    .arg(&job.id)
                    .arg("type")
                    .arg(job.spec.task_type().as_str())
                    .arg("error")
                    .arg(job.error.as_deref().unwrap_or(""))
                    .ignore();
            }
            JobState::Queued | JobState::Running | JobState::Failed => {}
        }
        self.acknowledge(&mut pipe, delivery);
        self.query_once(&pipe).await
    }

    async fn discard(&self, delivery: &Delivery) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        self.acknowledge(&mut pipe, delivery);
        self.query(&pipe).await
    }

    async fn reject(&self, delivery: &Delivery, reason: &str) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let Some(id) = &delivery.job_id {
            let key = self.key(&format!("job:{id}"));
            // Only this consumer holds the delivery, so nothing writes the record
            // between this read and the write below.
            let raw: Result<Option<String>, StoreError> =
                self.query(redis::cmd("GET").arg(&key)).await;
            if let Some(marked) = raw
                .ok()
                .flatten()
                .and_then(|r| mark_dead(&r, reason, unix_now()))
            {
                pipe.cmd("SET")
                    .arg(&key)
                    .arg(marked)
                    .arg("PX")
                    .arg(millis(RECORD_TTL))
                    .ignore();
            }
        }
        pipe.cmd("XADD")
            .arg(self.key(DEAD_LETTERS))
            .arg("*")
            .arg("job")
            .arg(delivery.job_id.as_deref().unwrap_or(""))
            .arg("entry")
            .arg(&delivery.entry)
            .arg("error")
            .arg(reason)
            .ignore();
        self.acknowledge(&mut pipe, delivery);
        self.query_once(&pipe).await
    }

    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        let stream = self.key(JOBS);
        let mut pipe = redis::pipe();
        pipe.cmd("XLEN")
            .arg(&stream)
            .cmd("XLEN")
            .arg(self.key(DEAD_LETTERS))
            .cmd("EXISTS")
            .arg(&stream);
        let (len, dead, exists): (u64, u64, bool) = self.query(&pipe).await?;
        let pending = if exists {
            let summary: Result<StreamPendingReply, _> = self
                .query(redis::cmd("XPENDING").arg(&stream).arg(GROUP))
                .await;
            match summary {
                Ok(reply) => reply.count() as u64,
                // No consumer group yet: nothing was ever delivered.
                Err(StoreError::Command(e)) if e.contains("NOGROUP") => 0,
                Err(e) => return Err(e),
            }
        } else {
            0
        };
        Ok(QueueStats {
            depth: len.saturating_sub(pending),
            pending,
            dead_letters: dead,
        })
    }

    async fn trim_dead_letters(&self, keep: usize) -> Result<usize, StoreError> {
        self.query(
            redis::cmd("XTRIM")
                .arg(self.key(DEAD_LETTERS))
                .arg("MAXLEN")
                .arg(keep),
        )
        .await
    }
}

impl RedisStore {
    /// Runs a consumer-group command on a pooled connection of its own, creating the
    /// group (and stream) first when Redis lost it, e.g. after a restart without
    /// persistence.
    async fn with_group<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        limit: Duration,
    ) -> Result<T, StoreError> {
        let run = async {
            let mut pooled = self.pooled().await?;
            let result = self.group_command(&mut pooled, cmd).await;
            // A connection that failed goes, rather than back to the pool.
            if result.as_ref().is_err_and(StoreError::is_connection) {
                drop(managed::Object::take(pooled));
            }
            result
        };
        tokio::time::timeout(limit, run)
            .await
            .unwrap_or(Err(StoreError::Timeout(limit)))
    }

    async fn group_command<T: redis::FromRedisValue>(
        &self,
        conn: &mut MultiplexedConnection,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        {
            match cmd.query_async::<T>(conn).await {
                Err(e) if e.code() == Some("NOGROUP") => {
                    let created: Result<(), _> = redis::cmd("XGROUP")
                        .arg("CREATE")
                        .arg(self.key(JOBS))
                        .arg(GROUP)
                        .arg("0")
                        .arg("MKSTREAM")
                        .query_async(conn)
                        .await;
                    match created {
                        Err(e) if e.code() != Some("BUSYGROUP") => {
                            return Err(classify(e, &self.target));
                        }
                        _ => {}
                    }
                    cmd.query_async::<T>(conn)
                        .await
                        .map_err(|e| classify(e, &self.target))
                }
                result => result.map_err(|e| classify(e, &self.target)),
            }
        }
    }

    /// Replicas an enqueued job must reach: with `auto`, one when the primary has a
    /// replica connected (read at most once a second), else none.
    async fn replicas_needed(&self) -> Result<u32, StoreError> {
        match self.wait.0 {
            WaitReplicas::Count(n) => Ok(n),
            WaitReplicas::Auto => {
                let fresh = *self.replicas.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some((at, n)) = fresh
                    && at.elapsed() < Duration::from_secs(1)
                {
                    return Ok(n.min(1));
                }
                let info: String = self.query(redis::cmd("INFO").arg("replication")).await?;
                let connected = info
                    .lines()
                    .find_map(|l| l.strip_prefix("connected_slaves:"))
                    .and_then(|n| n.trim().parse::<u32>().ok())
                    .unwrap_or(0);
                *self.replicas.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((std::time::Instant::now(), connected));
                Ok(connected.min(1))
            }
        }
    }

    /// Adds to `pipe` what ends a delivery: acknowledged, and deleted from the stream so
    /// it holds only unfinished work.
    fn acknowledge(&self, pipe: &mut redis::Pipeline, delivery: &Delivery) {
        let stream = self.key(JOBS);
        pipe.cmd("XACK")
            .arg(&stream)
            .arg(GROUP)
            .arg(&delivery.entry)
            .ignore()
            .cmd("XDEL")
            .arg(&stream)
            .arg(&delivery.entry)
            .ignore();
    }

    async fn series_write(
        &self,
        command: &str,
        series: &str,
        minute: i64,
        value: i64,
        retry: Retry,
    ) -> Result<(), StoreError> {
        let key = self.key(&format!("series:{series}"));
        let mut pipe = redis::pipe();
        pipe.cmd(command)
            .arg(&key)
            .arg(minute)
            .arg(value)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(HISTORY_TTL_SECONDS)
            .ignore();
        self.run(retry, |mut c| {
            let pipe = &pipe;
            async move { pipe.query_async(&mut c).await }
        })
        .await
    }
}
