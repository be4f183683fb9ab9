//! Publishes `events.k8s.io/v1` Events and folds repeats into a series, as
//! client-go's recorder does, with a bounded memory of recent events.
//!
//! kube's `Recorder` keeps every event it published for six minutes in an
//! unbounded map: converging 10,000 policies held about 35 MiB there
//! (docs/benchmarks.md). This publisher remembers at most [`SERIES_CAPACITY`]
//! recent events (client-go's correlator keeps 4096 too), a few hundred bytes each.

use std::{
    num::NonZeroUsize,
    sync::{Mutex, PoisonError},
};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::{
    api::{
        core::v1::ObjectReference,
        events::v1::{Event, EventSeries},
    },
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use lru::LruCache;
use serde_json::json;

use super::events::EventReason;

/// Recent events remembered for folding repeats.
pub const SERIES_CAPACITY: usize = 4096;

/// A repeat within this time joins the earlier event's series (client-go and kube: 6 minutes).
const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// The action every keyrotor event reports.
const ACTION: &str = "Reconcile";

/// Publishes events for the policies.
pub struct EventPublisher {
    client: Client,
    reporter: Reporter,
    series: Mutex<SeriesCache>,
}

/// Who reports the events.
#[derive(Debug, Clone)]
struct Reporter {
    controller: String,
    instance: String,
}

impl EventPublisher {
    /// A publisher reporting as `controller` (e.g. "keyrotor") from `instance` (this pod).
    pub fn new(client: Client, controller: impl Into<String>, instance: impl Into<String>) -> Self {
        Self {
            client,
            reporter: Reporter {
                controller: controller.into(),
                instance: instance.into(),
            },
            series: Mutex::new(SeriesCache::new(SERIES_CAPACITY)),
        }
    }

    /// Publishes `reason` with `note` about `regarding`: a new Event, or the
    /// next count of the series of the same reason about the same object version.
    pub async fn publish(
        &self,
        reason: EventReason,
        note: &str,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let key = SeriesKey::new(reason, regarding);
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let events: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let now = Timestamp::now();
        let next = self.cache().next(&key, now);
        if let Next::Repeat { event, count } = next {
            let patch = json!({
                "series": EventSeries { count, last_observed_time: MicroTime(now) },
            });
            match events
                .patch(&event, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    self.cache().published(key, event, count, now);
                    return Ok(());
                }
                // The API server let the event expire: start a new one, as client-go does.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(err) => return Err(err),
            }
        }
        let event = self.reporter.event(reason, note, regarding, now);
        let created = events.create(&PostParams::default(), &event).await?;
        if let Some(name) = created.metadata.name {
            self.cache().published(key, name, 1, now);
        }
        Ok(())
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, SeriesCache> {
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Reporter {
    /// A new Event (the first of its series).
    fn event(
        &self,
        reason: EventReason,
        note: &str,
        regarding: &ObjectReference,
        now: Timestamp,
    ) -> Event {
        let object = regarding.name.as_deref().unwrap_or(&self.controller);
        Event {
            action: Some(ACTION.to_owned()),
            reason: Some(reason.as_str().to_owned()),
            type_: Some(reason.event_type().to_owned()),
            note: Some(truncate_note(note).to_owned()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            metadata: ObjectMeta {
                name: Some(format!("{object}.{:x}", now.as_nanosecond())),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            ..Event::default()
        }
    }
}

/// The API server refuses notes over 1 KB; cut on a character boundary.
fn truncate_note(note: &str) -> &str {
    const MAX: usize = 1000;
    if note.len() <= MAX {
        return note;
    }
    let mut cut = MAX;
    while !note.is_char_boundary(cut) {
        cut -= 1;
    }
    &note[..cut]
}

/// What makes two events the same series: the reason and the object version
/// they are about (the action, type and reporter follow from the reason or are fixed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    reason: EventReason,
    /// namespace, name, uid and resourceVersion of the object.
    regarding: String,
}

impl SeriesKey {
    fn new(reason: EventReason, regarding: &ObjectReference) -> Self {
        let part = |v: &Option<String>| v.as_deref().unwrap_or_default().to_owned();
        Self {
            reason,
            regarding: [
                part(&regarding.namespace),
                part(&regarding.name),
                part(&regarding.uid),
                part(&regarding.resource_version),
            ]
            .join("/"),
        }
    }
}

/// The last published event of a series.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Series {
    event: String,
    count: i32,
    last_observed: Timestamp,
}

/// Whether to create an event or count a repeat.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Next {
    Create,
    Repeat { event: String, count: i32 },
}

/// Recent events, least recently published dropped first.
struct SeriesCache {
    entries: LruCache<SeriesKey, Series>,
}

impl SeriesCache {
    fn new(capacity: usize) -> Self {
        Self {
            entries: LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)),
        }
    }

    /// What publishing `key` at `now` should do.
    fn next(&mut self, key: &SeriesKey, now: Timestamp) -> Next {
        match self.entries.get(key) {
            Some(series) if series.last_observed + SERIES_WINDOW > now => Next::Repeat {
                event: series.event.clone(),
                count: series.count.saturating_add(1),
            },
            Some(_) => {
                self.entries.pop(key);
                Next::Create
            }
            None => Next::Create,
        }
    }

    /// Remembers that `event` was published (`count` times so far) at `now`.
    fn published(&mut self, key: SeriesKey, event: String, count: i32, now: Timestamp) {
        self.entries.put(
            key,
            Series {
                event,
                count,
                last_observed: now,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(name: &str, resource_version: &str) -> ObjectReference {
        ObjectReference {
            namespace: Some("team".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some(resource_version.into()),
            ..ObjectReference::default()
        }
    }

    fn key(reason: EventReason, name: &str, rv: &str) -> SeriesKey {
        SeriesKey::new(reason, &reference(name, rv))
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).expect("valid time")
    }

    #[test]
    fn a_repeat_within_six_minutes_counts_on_the_first_event() {
        let mut cache = SeriesCache::new(8);
        let k = key(EventReason::ApiError, "a", "1");
        assert_eq!(cache.next(&k, at(0)), Next::Create);
        cache.published(k.clone(), "a.1".into(), 1, at(0));
        assert_eq!(
            cache.next(&k, at(10)),
            Next::Repeat {
                event: "a.1".into(),
                count: 2
            }
        );
        cache.published(k.clone(), "a.1".into(), 2, at(10));
        // The window runs from the last repeat.
        assert_eq!(
            cache.next(&k, at(10 + 359)),
            Next::Repeat {
                event: "a.1".into(),
                count: 3
            }
        );
    }

    #[test]
    fn after_six_quiet_minutes_a_new_event_starts() {
        let mut cache = SeriesCache::new(8);
        let k = key(EventReason::ApiError, "a", "1");
        cache.published(k.clone(), "a.1".into(), 1, at(0));
        assert_eq!(cache.next(&k, at(360)), Next::Create);
        assert_eq!(cache.entries.len(), 0, "the expired entry is dropped");
    }

    #[test]
    fn another_reason_object_or_version_is_another_series() {
        let mut cache = SeriesCache::new(8);
        cache.published(key(EventReason::ApiError, "a", "1"), "a.1".into(), 1, at(0));
        for other in [
            key(EventReason::CredentialsError, "a", "1"),
            key(EventReason::ApiError, "b", "1"),
            key(EventReason::ApiError, "a", "2"),
        ] {
            assert_eq!(cache.next(&other, at(1)), Next::Create, "{other:?}");
        }
    }

    #[test]
    fn the_cache_stays_within_its_capacity_dropping_the_least_recent() {
        let mut cache = SeriesCache::new(3);
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            cache.published(
                key(EventReason::Rotated, name, "1"),
                format!("{name}.1"),
                1,
                at(i as i64),
            );
        }
        // "a" is used again, so "b" is now the least recent.
        assert!(matches!(
            cache.next(&key(EventReason::Rotated, "a", "1"), at(3)),
            Next::Repeat { .. }
        ));
        cache.published(key(EventReason::Rotated, "d", "1"), "d.1".into(), 1, at(4));
        assert_eq!(cache.entries.len(), 3);
        assert_eq!(
            cache.next(&key(EventReason::Rotated, "b", "1"), at(5)),
            Next::Create
        );
        assert!(matches!(
            cache.next(&key(EventReason::Rotated, "a", "1"), at(5)),
            Next::Repeat { .. }
        ));
    }

    #[test]
    fn notes_are_cut_to_1000_bytes_on_a_character_boundary() {
        let long = "é".repeat(600);
        let cut = truncate_note(&long);
        assert!(cut.len() <= 1000 && cut.len() >= 999, "{}", cut.len());
        assert!(long.starts_with(cut));
        assert_eq!(truncate_note("short"), "short");
    }

    #[test]
    fn new_events_name_the_object_reason_type_and_reporter() {
        // The shape the API server validates (events.k8s.io/v1 requires these).
        let now = at(0);
        let regarding = reference("policy-a", "7");
        let reporter = Reporter {
            controller: "keyrotor".into(),
            instance: "pod-1".into(),
        };
        let event = reporter.event(EventReason::RotationRefused, "no", &regarding, now);
        assert_eq!(event.reason.as_deref(), Some("RotationRefused"));
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(event.action.as_deref(), Some("Reconcile"));
        assert_eq!(event.reporting_controller.as_deref(), Some("keyrotor"));
        assert_eq!(event.reporting_instance.as_deref(), Some("pod-1"));
        assert_eq!(event.metadata.namespace.as_deref(), Some("team"));
        assert!(
            event
                .metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("policy-a."))
        );
        assert_eq!(event.regarding.as_ref(), Some(&regarding));
    }
}
