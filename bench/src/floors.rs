//! The floors, measured in the same run: a Cloudflare round trip, a Kubernetes
//! write, a watch delivery.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use keyrotor::cloudflare::{BudgetRegistry, ClientSettings, CloudflareClient, Credentials};
use keyrotor_cloudflare_sim::{AccountSeed, CredentialSeed};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;

use crate::world::World;

/// Medians of the three building blocks.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Floors {
    /// One Cloudflare call to the simulator.
    pub cloudflare_rtt: Duration,
    /// One merge patch answered by the API server.
    pub kubernetes_write: Duration,
    /// From the start of a patch to its watch event reaching a watcher (the
    /// event often arrives before the patch's own answer).
    pub watch_delivery: Duration,
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// Measures the floors with 21 samples each.
pub async fn measure(world: &World) -> anyhow::Result<Floors> {
    let sim = world.sim.simulator();
    sim.upsert_credential(CredentialSeed::token("floor", "floor-token"));
    sim.upsert_account(AccountSeed::new("ffffffff000000000000000000000000"));
    let client = CloudflareClient::new(
        &ClientSettings {
            base_url: world.sim.base_url(),
            ..ClientSettings::default()
        },
        Arc::new(BudgetRegistry::new(10_000, Duration::from_secs(1), 100)),
    )?;
    let token = Credentials::api_token("floor-token");
    let mut rtts = Vec::new();
    for _ in 0..21 {
        let start = Instant::now();
        client
            .get_config(&token, "ffffffff000000000000000000000000")
            .await?;
        rtts.push(start.elapsed());
    }

    let namespace = world.plane.create_namespace("bench-floors").await?;
    let maps: Api<ConfigMap> = Api::namespaced(world.client.clone(), &namespace);
    let map: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "probe"}}))?;
    maps.create(&PostParams::default(), &map).await?;
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let watch = tokio::spawn({
        let maps = maps.clone();
        async move {
            let mut events = watcher(maps, watcher::Config::default())
                .applied_objects()
                .boxed();
            while let Some(Ok(map)) = events.next().await {
                if let Some(value) = map.data.as_ref().and_then(|d| d.get("n")) {
                    let _ = seen_tx.send((value.clone(), Instant::now()));
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut writes, mut deliveries) = (Vec::new(), Vec::new());
    for n in 0..21 {
        let start = Instant::now();
        maps.patch(
            "probe",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"n": n.to_string()}})),
        )
        .await?;
        let answered = Instant::now();
        writes.push(answered - start);
        while let Some((value, at)) = seen_rx.recv().await {
            if value == n.to_string() {
                deliveries.push(at.saturating_duration_since(start));
                break;
            }
        }
    }
    watch.abort();
    Ok(Floors {
        cloudflare_rtt: median(rtts),
        kubernetes_write: median(writes),
        watch_delivery: median(deliveries),
    })
}
