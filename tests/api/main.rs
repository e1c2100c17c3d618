//! Integration tests: real servers on loopback, a real `redis-server` per test, and the
//! real `svc` binary where a test needs a process (signals, exit codes, output).

mod alerts;
mod browser;
mod cli;
mod connection;
mod dashboard;
mod detection;
mod foreign;
mod gateway;
mod helpers;
mod metrics;
mod queue;
mod resilience;
mod secrets;
mod shutdown;
mod store;
mod worker;
