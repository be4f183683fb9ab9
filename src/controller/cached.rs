//! What the controller keeps of a policy in its cache, which changes of a
//! policy deserve a reconcile, and when the cache is behind our own writes.

use std::{
    collections::{
        BTreeMap, HashMap,
        hash_map::{DefaultHasher, RandomState},
    },
    hash::{BuildHasher, Hash, Hasher},
    sync::{Arc, Mutex, PoisonError},
};

use kube::{
    ResourceExt,
    runtime::{Predicate as _, predicates},
};

use crate::crd::{
    ANNOTATION_ROTATE_FORCE, ANNOTATION_ROTATE_REQUESTED_AT, AccessKeyPolicy, FINALIZER,
    MAX_ROTATE_REQUEST_CHARS,
};

/// Drops what the operator never reads before a policy enters the cache:
/// managedFields, labels (the label selector is applied by the API server),
/// ownerReferences, every finalizer but ours and every annotation but the two rotate annotations (kubectl's
/// last-applied-configuration, or any `keyrotor.dev/` annotation a tenant
/// pads to 256 KiB, would otherwise stay in memory for every policy). Those
/// two keep at most one character more than a valid value may have, enough
/// for the decision to see that a value is too long, so each cached policy
/// is a few KiB whatever its tenant writes into its metadata. Every write the
/// operator makes is a patch of named fields, so nothing dropped here is ever
/// written back.
pub fn slim(policy: &mut AccessKeyPolicy) {
    let meta = &mut policy.metadata;
    meta.managed_fields = None;
    meta.labels = None;
    meta.owner_references = None;
    // Only ours: other finalizers are read fresh when ours is added or removed
    // (`finalize::set_finalizer`), so a tenant's megabyte of finalizers is
    // never kept for every policy.
    if let Some(finalizers) = meta.finalizers.as_mut() {
        finalizers.retain(|f| f == FINALIZER);
        if finalizers.is_empty() {
            meta.finalizers = None;
        }
    }
    if let Some(mut annotations) = meta.annotations.take() {
        let kept: BTreeMap<String, String> =
            [ANNOTATION_ROTATE_REQUESTED_AT, ANNOTATION_ROTATE_FORCE]
                .into_iter()
                .filter_map(|key| {
                    let mut value = annotations.remove(key)?;
                    cut_to_chars(&mut value, MAX_ROTATE_REQUEST_CHARS + 1);
                    Some((key.to_owned(), value))
                })
                .collect();
        meta.annotations = (!kept.is_empty()).then_some(kept);
    }
}

/// Cuts `value` to at most `chars` characters, and gives back the memory.
fn cut_to_chars(value: &mut String, chars: usize) {
    if let Some((end, _)) = value.char_indices().nth(chars) {
        value.truncate(end);
        value.shrink_to_fit();
    }
}

/// What changes of a policy deserve a reconcile: the spec (generation),
/// finalizers (kube's predicates), the rotate annotations and deletion (ours:
/// kube's `annotations` predicate would also fire on any other annotation a
/// user sets). Status writes change none of them.
pub fn relevant_change(policy: &AccessKeyPolicy) -> Option<u64> {
    predicates::generation
        .combine(predicates::finalizers)
        .combine(rotate_request_or_deletion)
        .hash_property(policy)
}

/// Which policies the watch delivers deserve a pass: the first sighting of
/// each, then only a [`relevant_change`]. kube's `predicate_filter` does the
/// same but keys its memory by copies of each policy's namespace, name and
/// uid (2.2 MB at 10,000 policies, docs/benchmarks.md); this one keys it by a
/// hash of them, with a key chosen at random per process, so nobody can pick
/// names that share another policy's entry (which could hide its changes).
#[derive(Debug, Default)]
pub struct ChangeFilter {
    keys: RandomState,
    /// The last relevant-change hash of each policy, by key.
    seen: HashMap<u64, u64>,
}

impl ChangeFilter {
    fn key(&self, policy: &AccessKeyPolicy) -> u64 {
        let meta = &policy.metadata;
        self.keys.hash_one((&meta.namespace, &meta.name, &meta.uid))
    }

    /// Whether `policy`, just delivered, deserves a pass.
    pub fn changed(&mut self, policy: &AccessKeyPolicy) -> bool {
        let Some(value) = relevant_change(policy) else {
            return true;
        };
        let key = self.key(policy);
        self.seen.insert(key, value) != Some(value)
    }

    /// Forgets a deleted policy.
    pub fn forget(&mut self, policy: &AccessKeyPolicy) {
        let key = self.key(policy);
        self.seen.remove(&key);
    }

    /// After a relist: forgets the policies that are no longer cached (a
    /// relist drops policies deleted while the watch was down without a
    /// delete event).
    pub fn keep_only(&mut self, cached: &[Arc<AccessKeyPolicy>]) {
        let keep: std::collections::HashSet<u64> = cached.iter().map(|p| self.key(p)).collect();
        self.seen.retain(|key, _| keep.contains(key));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }
}

/// The rotate annotations and whether the policy is being deleted.
fn rotate_request_or_deletion(policy: &AccessKeyPolicy) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    policy
        .annotations()
        .get(ANNOTATION_ROTATE_REQUESTED_AT)
        .hash(&mut hasher);
    policy
        .annotations()
        .get(ANNOTATION_ROTATE_FORCE)
        .hash(&mut hasher);
    policy
        .metadata
        .deletion_timestamp
        .is_some()
        .hash(&mut hasher);
    Some(hasher.finish())
}

/// The resourceVersions this replica's last pass on each policy replaced
/// (one per write: a finalizer patch, a pending-rotation status, the final
/// status), by uid. A pass that still finds one of them in the cache would
/// decide again on what it already changed (and its status write would be
/// refused with a conflict), so it waits for the watch to deliver the writes.
#[derive(Debug, Default)]
pub struct OwnWrites {
    replaced: Mutex<HashMap<String, Vec<String>>>,
}

impl OwnWrites {
    /// Remembers the versions of `policy` that a pass replaced with its writes.
    pub fn wrote(&self, policy: &AccessKeyPolicy, replaced: Vec<String>) {
        if let Some(uid) = policy.uid()
            && !replaced.is_empty()
        {
            self.lock().insert(uid, replaced);
        }
    }

    /// Whether `policy`, as cached, is a version our last pass replaced.
    /// Forgets the writes once the cache has moved past them.
    pub fn cache_is_behind(&self, policy: &AccessKeyPolicy) -> bool {
        let Some(uid) = policy.uid() else {
            return false;
        };
        let mut replaced = self.lock();
        let Some(versions) = replaced.get(&uid) else {
            return false;
        };
        if policy
            .resource_version()
            .is_some_and(|version| versions.contains(&version))
        {
            return true;
        }
        replaced.remove(&uid);
        false
    }

    /// The watch delivered `policy`: once the cache is past every version
    /// our last pass on it replaced, that record is not needed any more
    /// (otherwise it would stay until the policy's next pass, a drift check
    /// later: one per policy at rest).
    pub fn seen(&self, policy: &AccessKeyPolicy) {
        let Some(uid) = policy.metadata.uid.as_deref() else {
            return;
        };
        let mut replaced = self.lock();
        let behind = replaced.get(uid).map(|versions| {
            policy
                .metadata
                .resource_version
                .as_ref()
                .is_some_and(|version| versions.contains(version))
        });
        if behind == Some(false) {
            replaced.remove(uid);
        }
    }

    /// Forgets a deleted policy.
    pub fn forget(&self, policy: &AccessKeyPolicy) {
        if let Some(uid) = policy.uid() {
            self.lock().remove(&uid);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<String>>> {
        self.replaced.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(metadata: serde_json::Value) -> AccessKeyPolicy {
        serde_json::from_value(json!({
            "apiVersion": "keyrotor.dev/v1alpha1",
            "kind": "AccessKeyPolicy",
            "metadata": metadata,
            "spec": {
                "accountId": "0123456789abcdef0123456789abcdef",
                "keyRotationIntervalDays": 30,
                "credentialsRef": {"name": "cf"},
            },
        }))
        .expect("policy")
    }

    #[test]
    fn slim_keeps_what_the_reconcile_reads_and_drops_the_rest() {
        let mut p = policy(json!({
            "name": "p",
            "namespace": "team",
            "uid": "u-1",
            "resourceVersion": "42",
            "generation": 3,
            "creationTimestamp": "2026-11-26T00:00:00Z",
            "finalizers": ["keyrotor.dev/restore"],
            "labels": {"app.kubernetes.io/instance": "prod"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "u-0"}],
            "annotations": {
                "keyrotor.dev/rotate-requested-at": "r1",
                "keyrotor.dev/rotate-force": "r1",
                "keyrotor.dev/pad": "x".repeat(1024),
                "kubectl.kubernetes.io/last-applied-configuration": "{\"big\": true}",
            },
            "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
        }));
        let spec = p.spec.clone();
        let before = relevant_change(&p);
        slim(&mut p);
        assert_eq!(
            relevant_change(&p),
            before,
            "nothing a reconcile reacts to changed"
        );
        assert_eq!(p.spec, spec);
        let meta = &p.metadata;
        assert_eq!(meta.name.as_deref(), Some("p"));
        assert_eq!(meta.namespace.as_deref(), Some("team"));
        assert_eq!(meta.uid.as_deref(), Some("u-1"));
        assert_eq!(meta.resource_version.as_deref(), Some("42"));
        assert_eq!(meta.generation, Some(3));
        assert!(meta.creation_timestamp.is_some());
        assert_eq!(p.finalizers(), ["keyrotor.dev/restore"]);
        assert_eq!(
            p.annotations().keys().collect::<Vec<_>>(),
            [
                "keyrotor.dev/rotate-force",
                "keyrotor.dev/rotate-requested-at"
            ]
        );
        assert!(p.metadata.labels.is_none());
        assert!(p.metadata.owner_references.is_none());
        assert!(p.metadata.managed_fields.is_none());
    }

    #[test]
    fn a_pass_waits_until_the_cache_shows_its_own_write() {
        let at = |rv: &str| policy(json!({"name": "p", "uid": "u-1", "resourceVersion": rv}));
        let writes = OwnWrites::default();
        assert!(!writes.cache_is_behind(&at("5")), "nothing written yet");
        // A pass on version 5 patched the finalizer (6), then its status (7).
        writes.wrote(&at("5"), vec!["5".into(), "6".into()]);
        assert!(
            writes.cache_is_behind(&at("5")),
            "the first replaced version"
        );
        assert!(
            writes.cache_is_behind(&at("5")),
            "asking again changes nothing"
        );
        assert!(writes.cache_is_behind(&at("6")), "the finalizer patch only");
        assert!(!writes.cache_is_behind(&at("7")), "the last write arrived");
        assert_eq!(writes.len(), 0, "and is forgotten");
        assert!(!writes.cache_is_behind(&at("5")));
        // A pass that wrote nothing leaves nothing behind.
        writes.wrote(&at("7"), Vec::new());
        assert_eq!(writes.len(), 0);
        // Another object (same name, new uid) is not held back.
        writes.wrote(&at("7"), vec!["7".into()]);
        let recreated = policy(json!({"name": "p", "uid": "u-2", "resourceVersion": "7"}));
        assert!(!writes.cache_is_behind(&recreated));
        // A deleted policy is forgotten.
        writes.forget(&at("7"));
        assert_eq!(writes.len(), 0);
    }

    #[test]
    fn a_record_is_dropped_once_the_watch_delivers_a_later_version() {
        let at = |rv: &str| policy(json!({"name": "p", "uid": "u-1", "resourceVersion": rv}));
        let writes = OwnWrites::default();
        writes.seen(&at("5"));
        writes.wrote(&at("5"), vec!["5".into(), "6".into()]);
        writes.seen(&at("6"));
        assert_eq!(writes.len(), 1, "the finalizer patch only: still behind");
        assert!(writes.cache_is_behind(&at("6")));
        writes.seen(&at("7"));
        assert_eq!(writes.len(), 0, "the last write arrived");
        assert!(!writes.cache_is_behind(&at("7")));
        // Another policy's events leave the record alone.
        writes.wrote(&at("7"), vec!["7".into()]);
        writes.seen(&policy(
            json!({"name": "q", "uid": "u-2", "resourceVersion": "8"}),
        ));
        assert!(writes.cache_is_behind(&at("7")));
    }

    #[test]
    fn the_filter_passes_each_policy_once_then_only_its_relevant_changes() {
        let at = |uid: &str, rv: &str, generation: i64| {
            policy(json!({"name": "p", "namespace": "team", "uid": uid,
                "resourceVersion": rv, "generation": generation}))
        };
        let mut filter = ChangeFilter::default();
        assert!(filter.changed(&at("u-1", "1", 1)), "first sighting");
        assert!(!filter.changed(&at("u-1", "2", 1)), "a status write");
        assert!(filter.changed(&at("u-1", "3", 2)), "a spec change");
        let other = policy(json!({"name": "q", "namespace": "team", "uid": "u-9",
            "resourceVersion": "4", "generation": 2}));
        assert!(filter.changed(&other), "another policy, same generation");
        // Deleted and made again under the same name: a new uid.
        assert!(filter.changed(&at("u-2", "5", 2)));
        filter.forget(&at("u-1", "3", 2));
        assert!(filter.changed(&at("u-1", "3", 2)), "forgotten when deleted");
        // A relist that no longer lists q and u-1 drops them.
        filter.keep_only(&[Arc::new(at("u-2", "5", 2))]);
        assert_eq!(filter.len(), 1);
        assert!(!filter.changed(&at("u-2", "6", 2)));
    }

    #[test]
    fn slim_keeps_only_our_finalizer() {
        let many: Vec<String> = (0..1000).map(|i| format!("example.com/f{i}")).collect();
        let mut theirs = policy(json!({"name": "p", "finalizers": many}));
        slim(&mut theirs);
        assert!(theirs.metadata.finalizers.is_none());
        let mut both = policy(
            json!({"name": "p", "finalizers": ["example.com/a", FINALIZER, "example.com/b"]}),
        );
        slim(&mut both);
        assert_eq!(both.finalizers(), [FINALIZER]);
    }

    #[test]
    fn slim_leaves_no_empty_annotation_map_behind() {
        let mut p =
            policy(json!({"name": "p", "annotations": {"note": "x", "keyrotor.dev/pad": "x"}}));
        slim(&mut p);
        assert!(p.metadata.annotations.is_none());
    }

    #[test]
    fn slim_keeps_only_enough_of_an_overlong_value_to_see_it_is_too_long() {
        let longest = "я".repeat(MAX_ROTATE_REQUEST_CHARS);
        let mut p = policy(json!({"name": "p", "annotations": {
            "keyrotor.dev/rotate-requested-at": "ж".repeat(250 * 1024),
            "keyrotor.dev/rotate-force": longest,
        }}));
        slim(&mut p);
        let annotations = p.annotations();
        let request = &annotations["keyrotor.dev/rotate-requested-at"];
        assert_eq!(request.chars().count(), MAX_ROTATE_REQUEST_CHARS + 1);
        assert!(request.capacity() < 1024, "the rest was freed");
        assert_eq!(
            annotations["keyrotor.dev/rotate-force"], longest,
            "untouched"
        );
        let decided =
            crate::decide::RotateRequest::from_annotations(annotations).expect("a request");
        assert!(decided.too_long());
    }

    #[test]
    fn rotate_annotations_generation_finalizers_and_deletion_are_relevant() {
        let base = policy(json!({"name": "p", "generation": 1}));
        let changed = [
            policy(json!({"name": "p", "generation": 2})),
            policy(json!({"name": "p", "generation": 1,
                "annotations": {"keyrotor.dev/rotate-requested-at": "r"}})),
            policy(json!({"name": "p", "generation": 1,
                "annotations": {"keyrotor.dev/rotate-force": "true"}})),
            policy(json!({"name": "p", "generation": 1, "finalizers": ["x"]})),
            policy(json!({"name": "p", "generation": 1,
                "deletionTimestamp": "2026-11-26T00:00:00Z"})),
        ];
        for p in &changed {
            assert_ne!(
                relevant_change(p),
                relevant_change(&base),
                "{:?}",
                p.metadata
            );
        }
        let status_only = policy(json!({"name": "p", "generation": 1, "resourceVersion": "9",
            "labels": {"a": "b"}}));
        assert_eq!(relevant_change(&status_only), relevant_change(&base));
    }
}
