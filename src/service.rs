//! The names the system gives its parts, as types: a [`Role`] is what one process runs
//! (and announces in its heartbeat), a [`Service`] is what the dashboard and the health
//! history speak of, a [`ServiceState`] is what a probe found. Their strings are fixed
//! by the original system.

use serde::{Deserialize, Serialize};

/// A role one `svc` process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The REST API.
    Gateway,
    /// The scheduler and job consumer.
    Worker,
    /// The web page.
    Dashboard,
}

impl Role {
    /// Every role, in display order.
    pub const ALL: [Role; 3] = [Role::Gateway, Role::Worker, Role::Dashboard];

    /// The name in heartbeats.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Worker => "worker",
            Role::Dashboard => "dashboard",
        }
    }

    /// The service this role provides.
    pub fn service(self) -> Service {
        match self {
            Role::Gateway => Service::ApiGateway,
            Role::Worker => Service::Worker,
            Role::Dashboard => Service::Dashboard,
        }
    }
}

/// A part of the system whose health is probed, recorded and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Service {
    /// The gateway replicas.
    #[serde(rename = "api-gateway")]
    ApiGateway,
    /// The worker replicas.
    #[serde(rename = "worker-service")]
    Worker,
    /// The shared store.
    #[serde(rename = "redis")]
    Redis,
    /// The dashboard replicas.
    #[serde(rename = "dashboard")]
    Dashboard,
}

impl Service {
    /// Every service, in display order.
    pub const ALL: [Service; 4] = [
        Service::ApiGateway,
        Service::Worker,
        Service::Redis,
        Service::Dashboard,
    ];

    /// The name in JSON answers, store keys and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::ApiGateway => "api-gateway",
            Service::Worker => "worker-service",
            Service::Redis => "redis",
            Service::Dashboard => "dashboard",
        }
    }

    /// The name people read on the page.
    pub fn title(self) -> &'static str {
        match self {
            Service::ApiGateway => "API gateway",
            Service::Worker => "Worker",
            Service::Redis => "Redis",
            Service::Dashboard => "Dashboard",
        }
    }

    /// The role whose replicas provide it (none for the store).
    pub fn role(self) -> Option<Role> {
        match self {
            Service::ApiGateway => Some(Role::Gateway),
            Service::Worker => Some(Role::Worker),
            Service::Dashboard => Some(Role::Dashboard),
            Service::Redis => None,
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Health of a service or a target as a probe saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Answered, ready and fast.
    Healthy,
    /// Answered, but slowly or not ready.
    Degraded,
    /// No usable answer.
    Down,
}

/// What a history or an incident speaks of: one of svc's own services, or a target
/// the user listed (by its name, which is never one of the services' names).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Watched {
    /// A part of svc.
    Service(Service),
    /// A target of the targets file.
    Target(String),
}

impl Watched {
    /// The name in JSON answers and store keys.
    pub fn as_str(&self) -> &str {
        match self {
            Watched::Service(service) => service.as_str(),
            Watched::Target(name) => name,
        }
    }

    /// The name people read on the page.
    pub fn title(&self) -> &str {
        match self {
            Watched::Service(service) => service.title(),
            Watched::Target(name) => name,
        }
    }
}

impl From<Service> for Watched {
    fn from(service: Service) -> Self {
        Watched::Service(service)
    }
}

impl std::fmt::Display for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
