//! keyrotor: a Kubernetes operator that keeps a Cloudflare account's Access
//! signing-key rotation policy as the cluster's manifests say.

pub mod cli;
pub mod cloudflare;
pub mod controller;
pub mod crd;
pub mod decide;
pub mod leader;
pub mod metrics;
pub mod metrics_auth;
pub mod metrics_tls;
pub mod plugin;
pub mod server;
pub mod telemetry;
