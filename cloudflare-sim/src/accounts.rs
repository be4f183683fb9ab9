//! Accounts and their Access key configuration, with automatic rotation
//! applied lazily whenever an account is looked at.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::clock::to_micros;
use crate::config::{AccountSeed, DEFAULT_INTERVAL_DAYS};
use crate::schedule::{catch_up, days_until_next_rotation};

/// One account's key configuration as the simulator keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Account {
    interval_days: i64,
    last_rotation: Timestamp,
    enabled: bool,
    rotations: u64,
}

impl Account {
    /// An account from its seed; a seed without a last rotation was rotated `now`.
    pub(crate) fn from_seed(seed: &AccountSeed, now: Timestamp) -> Self {
        Self {
            interval_days: seed.key_rotation_interval_days,
            last_rotation: to_micros(seed.last_key_rotation_at.unwrap_or(now)),
            enabled: seed.access_keys_enabled,
            rotations: 0,
        }
    }

    /// Whether Access keys exist for the account.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Applies the automatic rotations due by `now`. Accounts without Access
    /// keys have nothing to rotate.
    pub(crate) fn catch_up(&mut self, now: Timestamp) {
        if !self.enabled {
            return;
        }
        let result = catch_up(self.last_rotation, self.interval_days, now);
        self.last_rotation = result.last_rotation;
        self.rotations += result.rotations;
    }

    /// Rotates now and restarts the countdown.
    pub(crate) fn rotate(&mut self, now: Timestamp) {
        self.last_rotation = to_micros(now);
        self.rotations += 1;
    }

    /// Changes the interval; the countdown keeps running from the last rotation.
    pub(crate) fn set_interval(&mut self, days: i64) {
        self.interval_days = days;
    }

    /// Applies a control-API change; absent fields stay as they are.
    pub(crate) fn patch(&mut self, patch: &AccountPatch) {
        if let Some(days) = patch.key_rotation_interval_days {
            self.interval_days = days;
        }
        if let Some(at) = patch.last_key_rotation_at {
            self.last_rotation = to_micros(at);
        }
        if let Some(enabled) = patch.access_keys_enabled {
            self.enabled = enabled;
        }
    }

    /// Replaces the configuration with a seed's, keeping the rotation count;
    /// a seed without a last rotation keeps the current one.
    pub(crate) fn reseed(&mut self, seed: &AccountSeed) {
        self.patch(&AccountPatch {
            key_rotation_interval_days: Some(seed.key_rotation_interval_days),
            last_key_rotation_at: seed.last_key_rotation_at,
            access_keys_enabled: Some(seed.access_keys_enabled),
        });
    }

    /// The `result` of the three key endpoints.
    pub(crate) fn key_config(&self, now: Timestamp) -> KeyConfig {
        KeyConfig {
            key_rotation_interval_days: self.interval_days,
            days_until_next_rotation: days_until_next_rotation(
                self.last_rotation,
                self.interval_days,
                now,
            ),
            last_key_rotation_at: self.last_rotation,
        }
    }

    /// The control API's view, which also shows what the API hides.
    pub(crate) fn view(&self, id: &str, now: Timestamp) -> AccountView {
        let config = self.key_config(now);
        AccountView {
            id: id.to_owned(),
            key_rotation_interval_days: config.key_rotation_interval_days,
            last_key_rotation_at: config.last_key_rotation_at,
            days_until_next_rotation: config.days_until_next_rotation,
            access_keys_enabled: self.enabled,
            rotations: self.rotations,
        }
    }
}

/// Cloudflare's key configuration object (snake_case, as the API sends it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct KeyConfig {
    key_rotation_interval_days: i64,
    days_until_next_rotation: i64,
    last_key_rotation_at: Timestamp,
}

impl KeyConfig {
    /// The object as an answer carries it, with the time written by `render`.
    pub(crate) fn answer(self, render: impl FnOnce(Timestamp) -> String) -> serde_json::Value {
        serde_json::json!({
            "key_rotation_interval_days": self.key_rotation_interval_days,
            "days_until_next_rotation": self.days_until_next_rotation,
            "last_key_rotation_at": render(self.last_key_rotation_at),
        })
    }
}

/// An account as the control API and the library show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    /// Account id.
    pub id: String,
    /// Days between automatic rotations.
    pub key_rotation_interval_days: i64,
    /// Most recent rotation, automatic ones included.
    pub last_key_rotation_at: Timestamp,
    /// Whole days until the next automatic rotation.
    pub days_until_next_rotation: i64,
    /// Whether Access keys exist for the account.
    pub access_keys_enabled: bool,
    /// Rotations since the account was created: on-demand and automatic.
    pub rotations: u64,
}

/// Body of `PUT /__sim/accounts/{id}`: every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct AccountPatch {
    pub(crate) key_rotation_interval_days: Option<i64>,
    pub(crate) last_key_rotation_at: Option<Timestamp>,
    pub(crate) access_keys_enabled: Option<bool>,
}

impl AccountPatch {
    /// The seed of a new account made by this patch: defaults where it is silent.
    pub(crate) fn into_seed(self, id: &str) -> AccountSeed {
        AccountSeed {
            id: id.to_owned(),
            key_rotation_interval_days: self
                .key_rotation_interval_days
                .unwrap_or(DEFAULT_INTERVAL_DAYS),
            last_key_rotation_at: self.last_key_rotation_at,
            access_keys_enabled: self.access_keys_enabled.unwrap_or(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn key_config_serializes_like_cloudflare() -> Result<(), serde_json::Error> {
        let seed = AccountSeed::new("a")
            .with_interval(30)
            .last_rotated_at(at("2026-11-14T09:12:44.512345678Z"));
        let account = Account::from_seed(&seed, at("2026-11-20T09:12:44Z"));
        let value = serde_json::to_value(account.key_config(at("2026-11-20T09:12:44Z")))?;
        assert_eq!(
            value,
            serde_json::json!({
                "key_rotation_interval_days": 30,
                "days_until_next_rotation": 24,
                "last_key_rotation_at": "2026-11-14T09:12:44.512345Z"
            })
        );
        Ok(())
    }

    #[test]
    fn catch_up_counts_automatic_rotations() {
        let seed = AccountSeed::new("a")
            .with_interval(21)
            .last_rotated_at(at("2026-01-01T00:00:00Z"));
        let mut account = Account::from_seed(&seed, at("2026-01-01T00:00:00Z"));
        account.catch_up(at("2026-02-15T00:00:00Z"));
        let view = account.view("a", at("2026-02-15T00:00:00Z"));
        assert_eq!(view.rotations, 2);
        assert_eq!(view.last_key_rotation_at, at("2026-02-12T00:00:00Z"));
        assert_eq!(view.days_until_next_rotation, 18);
    }

    #[test]
    fn disabled_accounts_do_not_rotate_by_themselves() {
        let seed = AccountSeed::new("a")
            .with_interval(21)
            .last_rotated_at(at("2026-01-01T00:00:00Z"))
            .disabled();
        let mut account = Account::from_seed(&seed, at("2026-01-01T00:00:00Z"));
        account.catch_up(at("2027-01-01T00:00:00Z"));
        assert_eq!(account.view("a", at("2027-01-01T00:00:00Z")).rotations, 0);
    }

    #[test]
    fn rotate_restarts_the_countdown() {
        let mut account = Account::from_seed(
            &AccountSeed::new("a").last_rotated_at(at("2026-01-01T00:00:00Z")),
            at("2026-01-01T00:00:00Z"),
        );
        account.rotate(at("2026-01-10T00:00:00.123456789Z"));
        let view = account.view("a", at("2026-01-10T00:00:00.123456789Z"));
        assert_eq!(view.last_key_rotation_at, at("2026-01-10T00:00:00.123456Z"));
        assert_eq!(view.days_until_next_rotation, 41);
        assert_eq!(view.rotations, 1);
    }

    #[test]
    fn patch_changes_only_given_fields() {
        let mut account = Account::from_seed(
            &AccountSeed::new("a").last_rotated_at(at("2026-01-01T00:00:00Z")),
            at("2026-01-01T00:00:00Z"),
        );
        account.patch(&AccountPatch {
            key_rotation_interval_days: Some(90),
            ..AccountPatch::default()
        });
        let view = account.view("a", at("2026-01-01T00:00:00Z"));
        assert_eq!(view.key_rotation_interval_days, 90);
        assert_eq!(view.last_key_rotation_at, at("2026-01-01T00:00:00Z"));
        assert!(view.access_keys_enabled);
    }
}
