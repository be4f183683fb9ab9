//! One reconcile of an `AccessKeyPolicy`: read inputs (policy, Secret,
//! account) -> pure decisions -> apply them -> build the status.

mod ownership;
mod refusal;
mod rotation;
mod secret;
pub mod witness;
pub use refusal::{Refusal, after_refusal, refusal_delay, wait_after_refusal};

pub use ownership::{AccountClaim, owner_of};
pub use rotation::{RotateRequest, RotationStep, decide_rotation};
pub use secret::{KEY_API_KEY, KEY_API_TOKEN, KEY_EMAIL, SecretError, credentials_from_secret};
pub use witness::AccountClock;
mod plan;
pub mod status;
pub use plan::{AccountPlan, plan_account};
#[cfg(test)]
mod properties;
