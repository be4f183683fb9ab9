//! The decisions of a reconcile, pure: a pass reads its inputs (policy,
//! Secret, ownership, budget, account), [`pass`] decides the status, events,
//! requeue and the ordered account writes, and [`after_write`] folds each
//! write's outcome back in. The controller (`crate::controller`) does the I/O.

pub mod failure;
mod ownership;
mod pass;
mod plan;
mod refusal;
pub mod restore;
mod rotation;
mod secret;
pub mod status;
pub mod window;
mod window_report;
mod window_rotation;
pub mod witness;

pub use ownership::{
    ClaimRecord, ClaimStep, Holder, claim_duration, claim_step, must_ask_holder, owner_as_seen_from,
};
pub use pass::{
    AccountWrite, CHECK_JITTER, CredentialMemory, HOLD_MARGIN, PassDecision, PassInput, Requeue,
    SecretRead, WriteOutcome, after_write, pass,
};
pub use plan::{AccountPlan, plan_account, window_plan};
pub use refusal::{Refusal, after_refusal, refusal_delay, wait_after_refusal};
pub use rotation::{RotateRequest, RotationStep, decide_rotation};
pub use secret::{SecretError, credentials_from_secret};
pub use witness::AccountClock;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod window_properties;
