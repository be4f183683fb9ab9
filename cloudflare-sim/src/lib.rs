//! A faithful local stand-in for Cloudflare's Access key configuration API.
//!
//! It serves `GET`/`PUT /client/v4/accounts/{id}/access/keys` and
//! `POST .../access/keys/rotate` with Cloudflare's envelope, error codes,
//! authentication order, rate limit and automatic rotation, plus a `/__sim`
//! control API for tests: request log, clock, accounts, credentials, faults.
//! `docs/simulator.md` describes the behaviour and the choices made where
//! Cloudflare documents nothing.
//!
//! Where things live:
//! - [`config`]: seeds and the config file; `cli`: the binary's flags.
//! - `state`, `accounts`, `schedule`, `clock`: what is remembered, and
//!   the rotation arithmetic on the simulator's clock.
//! - `auth`, `interval`, `rate_limit`, `keys`: how an API call is judged.
//! - `envelope`: response bodies and codes; `faults`: injected misbehaviour;
//!   [`timestamps`]: the form of the times in answers.
//! - `log`: the request log; `api`, `control`: the HTTP routes.
//! - `simulator`, `server`: the [`Simulator`] handle and serving it.

#![forbid(unsafe_code)]

mod accounts;
mod api;
mod auth;
mod cli;
mod clock;
pub mod config;
mod control;
mod envelope;
mod faults;
mod interval;
mod keys;
mod log;
mod rate_limit;
mod schedule;
mod server;
mod simulator;
mod state;
pub mod timestamps;

pub use accounts::AccountView;
pub use cli::Cli;
pub use config::{
    AccountSeed, ConfigError, CredentialSecret, CredentialSeed, RateLimitConfig, SimConfig,
};
pub use faults::{Faults, Force429};
pub use log::RequestRecord;
pub use server::RunningSimulator;
pub use simulator::Simulator;
pub use timestamps::{OffsetStyle, Precision, TimestampStyle};

use axum::Router;

impl Simulator {
    /// Routes for both the simulated API (`/client/v4`) and the control API
    /// (`/__sim`). Other paths answer 404 with code 7000 and are not logged.
    pub fn router(&self) -> Router {
        api::router(self)
            .merge(control::router())
            .fallback(|| async { envelope::no_route() })
            .with_state(self.clone())
    }
}
