//! The record of every `/client/v4` request, for tests to assert on.
//!
//! It names callers by credential id only: tokens, keys and emails never
//! enter it.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// One `/client/v4` request as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    /// Position in the log, from 1, in the order answers were decided.
    pub seq: u64,
    /// Arrival time on the simulator clock.
    pub time: Timestamp,
    /// HTTP method.
    pub method: String,
    /// Request path, without the query.
    pub path: String,
    /// Account id taken from the path, if the path has one.
    pub account_id: Option<String>,
    /// Credential id, or `anonymous` (no credentials sent) or `unknown`.
    pub credential: String,
    /// HTTP status answered; 0 for a hang, which never answers.
    pub status: u16,
    /// Injected fault, if any: `hang`, `force429`, `html`, `error`,
    /// `truncated`, or `latency` when only latency was added.
    pub fault: Option<String>,
}

/// A new record before it gets its sequence number.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) time: Timestamp,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) credential: String,
    pub(crate) status: u16,
    pub(crate) fault: Option<String>,
}

/// The in-memory log; callers hold the simulator's lock around it.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestLog {
    records: Vec<RequestRecord>,
    last_seq: u64,
}

impl RequestLog {
    /// Appends an entry and returns the record it became.
    pub(crate) fn push(&mut self, entry: Entry) -> RequestRecord {
        self.last_seq += 1;
        let record = RequestRecord {
            seq: self.last_seq,
            time: entry.time,
            account_id: account_id_in(&entry.path).map(str::to_owned),
            method: entry.method,
            path: entry.path,
            credential: entry.credential,
            status: entry.status,
            fault: entry.fault,
        };
        self.records.push(record.clone());
        record
    }

    /// All records, oldest first.
    pub(crate) fn records(&self) -> Vec<RequestRecord> {
        self.records.clone()
    }

    /// Forgets all records; sequence numbers keep counting so a test can
    /// tell a cleared log from one that was never written.
    pub(crate) fn clear(&mut self) {
        self.records.clear();
    }
}

/// The `{account_id}` of `/client/v4/accounts/{account_id}/...`.
pub(crate) fn account_id_in(path: &str) -> Option<&str> {
    let mut segments = path.split('/').skip_while(|segment| *segment != "accounts");
    segments.next()?;
    segments.next().filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> Entry {
        Entry {
            time: Timestamp::UNIX_EPOCH,
            method: "GET".to_owned(),
            path: path.to_owned(),
            credential: "ci".to_owned(),
            status: 200,
            fault: None,
        }
    }

    #[test]
    fn account_id_comes_from_the_path() {
        assert_eq!(
            account_id_in("/client/v4/accounts/abc/access/keys"),
            Some("abc")
        );
        assert_eq!(
            account_id_in("/client/v4/accounts/abc/access/keys/rotate"),
            Some("abc")
        );
        assert_eq!(account_id_in("/client/v4/accounts/"), None);
        assert_eq!(account_id_in("/client/v4/zones"), None);
    }

    #[test]
    fn sequence_numbers_survive_clearing() {
        let mut log = RequestLog::default();
        assert_eq!(log.push(entry("/client/v4/accounts/a/access/keys")).seq, 1);
        assert_eq!(log.push(entry("/client/v4/x")).seq, 2);
        assert_eq!(log.records()[0].account_id.as_deref(), Some("a"));
        log.clear();
        assert!(log.records().is_empty());
        assert_eq!(log.push(entry("/client/v4/x")).seq, 3);
    }

    #[test]
    fn json_shape_is_camel_case() -> Result<(), serde_json::Error> {
        let mut log = RequestLog::default();
        log.push(entry("/client/v4/accounts/a/access/keys"));
        let value = serde_json::to_value(&log.records()[0])?;
        assert_eq!(value["accountId"], "a");
        assert_eq!(value["time"], "1970-01-01T00:00:00Z");
        assert!(value.get("fault").is_some_and(serde_json::Value::is_null));
        Ok(())
    }
}
