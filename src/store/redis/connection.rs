//! The connection to Redis: one server (plain or TLS) or the primary the sentinels
//! name, a pool of connections, one shared multiplexed connection for short commands,
//! reconnection, the operation timeout and the circuit breaker, and what a failure
//! means in words an operator can act on.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleResult};
use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{self, AsyncConnectionConfig, ErrorKind, IntoConnectionInfo};
use tokio::runtime::{Handle, RuntimeFlavor};

use super::RedisStore;
use crate::config::RedisSettings;
use crate::store::StoreError;
use crate::store::breaker::Breaker;

/// Upper bound of one store operation, including getting a connection.
pub const OP_TIMEOUT: Duration = Duration::from_secs(1);

/// A pooled connection used more recently than this is handed out without a PING.
const RECHECK_AFTER_IDLE: Duration = Duration::from_secs(10);

/// How to reach one server: its address and login, and the CA file to trust. The
/// file is read again for every new connection, so a CA that cert-manager rotates
/// takes effect at the next reconnect (when the server presents a certificate the
/// connections in use no longer accept, they fail and are made again) with no restart.
#[derive(Debug, Clone)]
pub(super) struct Server {
    info: redis::ConnectionInfo,
    ca_file: Option<PathBuf>,
}

impl Server {
    /// A client for a new connection, trusting the CA file as it is now.
    pub(super) fn client(&self) -> redis::RedisResult<redis::Client> {
        match &self.ca_file {
            None => redis::Client::open(self.info.clone()),
            Some(file) => {
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(read_ca(file)?),
                };
                redis::Client::build_with_tls(self.info.clone(), certificates)
            }
        }
    }
}

/// How to reach the primary the sentinels name: the sentinels, the primary's login,
/// and with TLS the CA file to trust, read again for every new connection (as for
/// [`Server`]).
#[derive(Debug, Clone)]
pub(super) struct Sentinels {
    nodes: Vec<redis::ConnectionInfo>,
    master: String,
    primary: redis::RedisConnectionInfo,
    tls: bool,
    ca_file: Option<PathBuf>,
}

impl Sentinels {
    /// A client that asks the sentinels for the primary and connects to it, trusting
    /// the CA file as it is now.
    fn client(&self) -> redis::RedisResult<redis::sentinel::SentinelClient> {
        use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
        let Some(file) = &self.ca_file else {
            let mut node = SentinelNodeConnectionInfo::default()
                .set_redis_connection_info(self.primary.clone());
            if self.tls {
                node = node.set_tls_mode(redis::TlsMode::Secure);
            }
            return SentinelClient::build(
                self.nodes.clone(),
                self.master.clone(),
                Some(node),
                SentinelServerType::Master,
            );
        };
        let root_cert = read_ca(file)?;
        let certificates = |root_cert: &[u8]| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(root_cert.to_vec()),
        };
        let mut builder = redis::sentinel::SentinelClientBuilder::new(
            self.nodes.iter().map(|n| n.addr().clone()),
            &self.master,
            SentinelServerType::Master,
        )?
        .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
        .set_client_to_redis_db(self.primary.db())
        .set_client_to_redis_certificates(certificates(&root_cert));
        if self
            .nodes
            .iter()
            .any(|n| matches!(n.addr(), redis::ConnectionAddr::TcpTls { .. }))
        {
            builder = builder
                .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure)
                .set_client_to_sentinel_certificates(certificates(&root_cert));
        }
        if let Some(user) = self.primary.username() {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = self.primary.password() {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(password) = self
            .nodes
            .first()
            .and_then(|n| n.redis_settings().password())
        {
            builder = builder.set_client_to_sentinel_password(password);
        }
        builder.build()
    }
}

/// The CA file's content, or an error that names the file.
fn read_ca(file: &std::path::Path) -> redis::RedisResult<Vec<u8>> {
    std::fs::read(file).map_err(|e| {
        redis::RedisError::from((
            ErrorKind::InvalidClientConfig,
            "cannot read the CA file",
            format!("{}: {e}", file.display()),
        ))
    })
}

/// Makes the pool's connections: to one server, or through redis-rs' sentinel client
/// to the primary the sentinels name now. (deadpool-redis' own managers take no CA
/// file that can change, and its sentinel manager no connection config, so redis-rs'
/// default 500 ms response timeout would cut every blocking read of the job queue.)
/// Either way a connection is checked only when it has sat idle.
pub(super) enum Manager {
    Server {
        server: Server,
        config: AsyncConnectionConfig,
    },
    Sentinel {
        sentinels: Sentinels,
        config: AsyncConnectionConfig,
    },
}

impl managed::Manager for Manager {
    type Type = MultiplexedConnection;
    type Error = redis::RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, redis::RedisError> {
        match self {
            Manager::Server { server, config } => {
                server
                    .client()?
                    .get_multiplexed_async_connection_with_config(config)
                    .await
            }
            // Asks the sentinels which node is the primary now.
            Manager::Sentinel { sentinels, config } => {
                sentinels
                    .client()?
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
            Manager::Server { .. } => {
                let _: String = redis::cmd("PING").query_async(conn).await?;
                Ok(())
            }
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

pub(super) type Pool = managed::Pool<Manager>;

/// A command or a pipeline.
pub(super) trait Request: Sync {
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
pub(super) enum Retry {
    Safe,
    Never,
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
                let server = |redis_info: redis::RedisConnectionInfo| -> Result<_, StoreError> {
                    let server = Server {
                        info: addr
                            .clone()
                            .into_connection_info()
                            .map_err(unusable)?
                            .set_redis_settings(redis_info),
                        ca_file: settings.tls.as_ref().and_then(|t| t.ca_file.clone()),
                    };
                    // A CA file that cannot be read or used is a configuration error,
                    // told at start.
                    server.client().map_err(unusable)?;
                    Ok(server)
                };
                let manager = Manager::Server {
                    server: server(redis_info)?,
                    config: AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(OP_TIMEOUT))
                        .set_response_timeout(None),
                };
                let without_password = match settings.password {
                    Some(_) => Some(server(without_password)?),
                    None => None,
                };
                (
                    manager,
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
                    let addr = if sentinels.tls {
                        redis::ConnectionAddr::TcpTls {
                            host: host.clone(),
                            port: *port,
                            insecure: false,
                            tls_params: None,
                        }
                    } else {
                        redis::ConnectionAddr::Tcp(host.clone(), *port)
                    };
                    nodes.push(
                        addr.into_connection_info()
                            .map_err(unusable)?
                            .set_redis_settings(sentinel_info.clone()),
                    );
                }
                let spec = Sentinels {
                    nodes,
                    master: sentinels.master.clone(),
                    primary: redis_info.clone(),
                    tls: settings.tls.is_some(),
                    ca_file: settings.tls.as_ref().and_then(|t| t.ca_file.clone()),
                };
                // A CA file that cannot be read or used is a configuration error, told
                // at start.
                spec.client().map_err(unusable)?;
                let manager = Manager::Sentinel {
                    sentinels: spec,
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
            id: {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                NEXT.fetch_add(1, Ordering::Relaxed)
            },
            generation: AtomicU64::new(0),
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
    pub(super) async fn pooled(&self) -> Result<managed::Object<Manager>, StoreError> {
        let pool = self.pool.clone();
        let get = async move { pool.get().await };
        let got = match &self.runtime {
            Some(runtime) => runtime
                .spawn(get)
                .await
                .map_err(|e| StoreError::Unavailable(format!("connecting failed: {e}")))?,
            None => get.await,
        };
        self.checked(got).await
    }

    /// A connection made on the current runtime, for this thread only.
    async fn pooled_here(&self) -> Result<managed::Object<Manager>, StoreError> {
        let got = self.pool.get().await;
        self.checked(got).await
    }

    async fn checked(
        &self,
        got: Result<managed::Object<Manager>, managed::PoolError<redis::RedisError>>,
    ) -> Result<managed::Object<Manager>, StoreError> {
        match got {
            Ok(conn) => Ok(conn),
            Err(managed::PoolError::Backend(e)) => Err(self.explain(e).await),
            Err(managed::PoolError::Timeout(_)) => Err(StoreError::Timeout(OP_TIMEOUT)),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }

    /// What a failed connection attempt means, in words an operator can act on.
    pub(super) async fn explain(&self, e: redis::RedisError) -> StoreError {
        if e.kind() == ErrorKind::AuthenticationFailed {
            // redis-rs says only "failed": find out whether any password was needed.
            if let Some(server) = &self.without_password {
                let open = async {
                    let client = server.client()?;
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

    /// The connection short commands share; when there is none, one caller makes it
    /// and the others wait for that one.
    ///
    /// An HTTP worker thread (a current-thread runtime) has one of its own, made and
    /// driven on that thread: a request's command then never hands off to another
    /// thread and back, which on a busy core costs more than the command. It ends with
    /// the thread. Everything else shares the one made on the store's runtime.
    pub(super) async fn shared(&self) -> Result<MultiplexedConnection, StoreError> {
        let on_worker_thread =
            Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::CurrentThread);
        if on_worker_thread {
            return self.thread_shared().await;
        }
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

    async fn thread_shared(&self) -> Result<MultiplexedConnection, StoreError> {
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(conn) = thread_conn::get(self.id, generation) {
            return Ok(conn);
        }
        let _reconnecting = self.reconnect.lock().await;
        if let Some(conn) = thread_conn::get(self.id, generation) {
            return Ok(conn);
        }
        let conn = managed::Object::take(self.pooled_here().await?);
        thread_conn::put(self.id, generation, conn.clone());
        Ok(conn)
    }

    fn current(&self) -> Option<MultiplexedConnection> {
        self.shared
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Drops the shared connection and every thread's own: the next command makes a
    /// fresh one.
    pub(super) fn drop_shared(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        *self.shared.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Runs a command or pipeline that may safely run twice on the shared connection.
    pub(super) async fn query<T: redis::FromRedisValue>(
        &self,
        req: &impl Request,
    ) -> Result<T, StoreError> {
        self.run(Retry::Safe, |mut c| async move { req.send(&mut c).await })
            .await
    }

    /// Runs a command or pipeline that must not run twice (INCR, LPUSH, ...).
    pub(super) async fn query_once<T: redis::FromRedisValue>(
        &self,
        req: &impl Request,
    ) -> Result<T, StoreError> {
        self.run(Retry::Never, |mut c| async move { req.send(&mut c).await })
            .await
    }

    /// Runs `op` on the shared connection, within [`OP_TIMEOUT`].
    pub(super) async fn run<T, F, Fut>(&self, retry: Retry, op: F) -> Result<T, StoreError>
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
    pub(super) async fn bounded<T>(
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

/// Connection failures say which (refused, authentication, lost); server-side errors
/// (wrong type, ...) are command errors.
pub(super) fn classify(e: redis::RedisError, target: &str) -> StoreError {
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

/// The connections of this thread, by store and generation ([`RedisStore::shared`]).
mod thread_conn {
    use std::cell::RefCell;

    use deadpool_redis::redis::aio::MultiplexedConnection;

    /// Stores one thread keeps connections for: a process has one; tests make many.
    const KEPT: usize = 4;

    thread_local! {
        static CONNS: RefCell<Vec<(u64, u64, MultiplexedConnection)>> =
            const { RefCell::new(Vec::new()) };
    }

    /// This thread's connection to store `id`, unless dropped since (`generation`).
    pub(super) fn get(id: u64, generation: u64) -> Option<MultiplexedConnection> {
        CONNS.with_borrow(|conns| {
            conns
                .iter()
                .find(|(i, g, _)| *i == id && *g == generation)
                .map(|(_, _, conn)| conn.clone())
        })
    }

    pub(super) fn put(id: u64, generation: u64, conn: MultiplexedConnection) {
        CONNS.with_borrow_mut(|conns| {
            conns.retain(|(i, _, _)| *i != id);
            if conns.len() >= KEPT {
                conns.remove(0);
            }
            conns.push((id, generation, conn));
        });
    }
}
