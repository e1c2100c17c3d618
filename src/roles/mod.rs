//! The roles one `svc` process can run. Roles never import each other: what two of them
//! need lives beside this module (`http`, `store`, `config`, `telemetry`).

pub mod all;
pub mod dashboard;
pub mod gateway;
pub mod load;
pub mod worker;
