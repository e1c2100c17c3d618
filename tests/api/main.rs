//! Integration tests: real servers on loopback, a real `redis-server` per test, and the
//! real `svc` binary where a test needs a process (signals, exit codes, output).

mod alerts;
mod browser;
mod channels;
mod cli;
mod connection;
mod credentials;
mod dashboard;
mod delivery_faults;
mod detection;
mod email;
mod faults;
mod fleet;
mod foreign;
mod gateway;
mod helpers;
mod history;
mod load;
mod maintenance;
mod metrics;
mod queue;
mod reminders;
mod resilience;
mod secrets;
mod sentinel;
mod shutdown;
mod slo;
mod status_pages;
mod store;
mod targets;
mod traces;
mod traffic;
mod worker;
