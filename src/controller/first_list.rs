//! The first list of policies, cached and reconciled page by page as it
//! arrives instead of all at once when it ends.
//!
//! kube's controller starts no pass until its store holds the whole first
//! list (`Store::wait_until_ready`), and its store takes a list in only when
//! the list is complete (`InitApply` into a buffer, swapped in at `InitDone`),
//! so that a relist drops what was deleted meanwhile. Policies are listed ten
//! a page (`run::POLICY_PAGE_SIZE`), so at 10,000 policies every pass waited
//! 2.6 s for the last page (docs/benchmarks.md). kube has no switch for this;
//! the adapter below is the whole of it.
//!
//! It marks the store ready at once, with an empty list (`Init`, `InitDone`),
//! and turns the first list's `InitApply` into `Apply`: each page's policies
//! are cached, and start their passes, as the page comes. A store filled so
//! can lack policies while the list runs, never hold a deleted one (it held
//! nothing before). Every later list, a relist after the watch expired or a
//! first list that failed partway and starts again, goes through the store's
//! buffer as kube does it, so what was deleted meanwhile leaves the cache.

use futures::{Stream, StreamExt};
use kube::runtime::watcher::{Error, Event};

/// Where the watch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Phase {
    /// Before the first list starts.
    #[default]
    Before,
    /// The first list: its pages go to the store as they come.
    FirstList,
    /// The first list ended or started again: lists are buffered as kube does.
    Buffered,
}

impl Phase {
    /// What the store gets for `event`, and the phase after it.
    fn step<K>(self, event: Event<K>) -> (Self, Option<Event<K>>) {
        match (self, event) {
            // The store was made ready empty already; there is no buffer to start.
            (Self::Before, Event::Init) => (Self::FirstList, None),
            (Self::FirstList, Event::InitApply(policy)) => {
                (Self::FirstList, Some(Event::Apply(policy)))
            }
            // Everything listed is in the store already; swapping in the empty
            // buffer would empty it.
            (Self::FirstList, Event::InitDone) => (Self::Buffered, None),
            // The first list failed partway and starts again: this one is
            // buffered, so that what was deleted meanwhile is dropped at its end.
            (Self::FirstList, Event::Init) => (Self::Buffered, Some(Event::Init)),
            (phase, event) => (phase, Some(event)),
        }
    }
}

/// The policy watch's events as the store should take them: first an empty
/// list (the store is ready at once), then the first list's pages as
/// ordinary applies, then everything unchanged.
pub fn incremental<K, S>(events: S) -> impl Stream<Item = Result<Event<K>, Error>> + Send
where
    K: Send + 'static,
    S: Stream<Item = Result<Event<K>, Error>> + Send,
{
    let ready_empty = futures::stream::iter([Ok(Event::Init), Ok(Event::InitDone)]);
    let mut phase = Phase::default();
    let rest = events.filter_map(move |event| {
        let out = match event {
            Ok(event) => {
                let (next, out) = phase.step(event);
                phase = next;
                out.map(Ok)
            }
            Err(err) => Some(Err(err)),
        };
        futures::future::ready(out)
    });
    ready_empty.chain(rest)
}

#[cfg(test)]
mod tests {
    use futures::{FutureExt, StreamExt, channel::mpsc};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::{
        ResourceExt,
        api::ObjectMeta,
        runtime::{WatchStreamExt, reflector},
    };

    use super::*;

    fn object(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("team".to_owned()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    fn cached(store: &reflector::Store<ConfigMap>) -> Vec<String> {
        let mut names: Vec<String> = store
            .state()
            .iter()
            .filter_map(|o| o.metadata.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Feeds watch events one by one through the adapter into kube's own
    /// store, and gives back the store and a way to send the next event and
    /// wait until the store has taken it.
    struct Fed {
        store: reflector::Store<ConfigMap>,
        tx: mpsc::UnboundedSender<Result<Event<ConfigMap>, Error>>,
        out: futures::stream::BoxStream<'static, Result<Event<ConfigMap>, Error>>,
    }

    impl Fed {
        fn new() -> Self {
            let (reader, writer) = reflector::store();
            let (tx, rx) = mpsc::unbounded();
            let out = incremental(rx).reflect(writer).boxed();
            Self {
                store: reader,
                tx,
                out,
            }
        }

        /// Sends `event`, then takes every event the adapter lets through.
        async fn send(&mut self, event: Event<ConfigMap>) -> Vec<String> {
            self.tx
                .unbounded_send(Ok(event))
                .expect("the stream is open");
            let mut seen = Vec::new();
            while let Some(Some(event)) = self.out.next().now_or_never() {
                seen.push(match event {
                    Ok(Event::Init) => "Init".to_owned(),
                    Ok(Event::InitApply(o)) => format!("InitApply({})", o.name_any()),
                    Ok(Event::InitDone) => "InitDone".to_owned(),
                    Ok(Event::Apply(o)) => format!("Apply({})", o.name_any()),
                    Ok(Event::Delete(o)) => format!("Delete({})", o.name_any()),
                    Err(err) => format!("error {err}"),
                });
            }
            seen
        }
    }

    #[tokio::test]
    async fn the_store_is_ready_at_once_and_fills_page_by_page() {
        let mut fed = Fed::new();
        assert_eq!(fed.send(Event::Init).await, ["Init", "InitDone"]);
        assert!(
            fed.store.wait_until_ready().now_or_never().is_some(),
            "ready before the first list's first page"
        );
        assert!(cached(&fed.store).is_empty());
        assert_eq!(fed.send(Event::InitApply(object("a"))).await, ["Apply(a)"]);
        assert_eq!(cached(&fed.store), ["a"], "cached before the list ends");
        fed.send(Event::InitApply(object("b"))).await;
        assert_eq!(cached(&fed.store), ["a", "b"]);
        assert!(
            fed.send(Event::InitDone).await.is_empty(),
            "the end of the first list empties nothing"
        );
        assert_eq!(cached(&fed.store), ["a", "b"]);
        fed.send(Event::Delete(object("a"))).await;
        assert_eq!(cached(&fed.store), ["b"]);
    }

    #[tokio::test]
    async fn a_relist_is_buffered_and_drops_what_was_deleted_meanwhile() {
        let mut fed = Fed::new();
        for event in [
            Event::Init,
            Event::InitApply(object("a")),
            Event::InitApply(object("b")),
            Event::InitDone,
        ] {
            fed.send(event).await;
        }
        assert_eq!(fed.send(Event::Init).await, ["Init"]);
        assert_eq!(
            fed.send(Event::InitApply(object("b"))).await,
            ["InitApply(b)"]
        );
        assert_eq!(
            cached(&fed.store),
            ["a", "b"],
            "the cache stays whole while the relist runs"
        );
        assert_eq!(fed.send(Event::InitDone).await, ["InitDone"]);
        assert_eq!(cached(&fed.store), ["b"], "a was deleted meanwhile");
    }

    #[tokio::test]
    async fn a_first_list_started_again_is_buffered() {
        let mut fed = Fed::new();
        fed.send(Event::Init).await;
        fed.send(Event::InitApply(object("a"))).await;
        fed.send(Event::InitApply(object("b"))).await;
        // The list failed after two pages and starts again; meanwhile a went.
        assert_eq!(fed.send(Event::Init).await, ["Init"]);
        fed.send(Event::InitApply(object("b"))).await;
        fed.send(Event::InitApply(object("c"))).await;
        assert_eq!(cached(&fed.store), ["a", "b"]);
        fed.send(Event::InitDone).await;
        assert_eq!(cached(&fed.store), ["b", "c"]);
    }
}
