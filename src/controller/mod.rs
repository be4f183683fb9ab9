//! The controller: watches, the reconcile sequence (I/O around the pure
//! decisions in [`crate::decide`]), events and the error policy.

mod cached;
mod claims;
mod context;
mod demand;
mod drift_checks;
mod error;
mod events;
mod fair_share;
mod finalize;
mod first_list;
mod inputs;
mod pause;
mod publisher;
mod reconciler;
mod run;
mod secret_index;
mod status_writer;

pub use claims::{AccountClaims, ClaimError, lease_name as claim_lease_name};
pub use context::{Context, ControllerSettings, PolicyMemory, Remembered};
pub use drift_checks::DriftChecks;
pub use events::EventReason;
pub use fair_share::FairShare;
pub use publisher::EventPublisher;
pub use reconciler::ReconcileError;
pub use run::{RunOptions, run};
pub use secret_index::SecretIndex;
