//! The controller: watches, the reconcile sequence (I/O around the pure
//! decisions in [`crate::reconcile`]), events and the error policy.

mod cached;
mod context;
mod events;
mod pause;
mod publisher;
mod reconciler;
mod run;

pub use context::{Context, ControllerSettings};
pub use events::EventReason;
pub use publisher::EventPublisher;
pub use reconciler::ReconcileError;
pub use run::{RunOptions, run};
