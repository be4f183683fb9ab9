//! The floors, measured in the same run: a Cloudflare round trip, a Kubernetes
//! write, a watch delivery. The write and its watch event are a merge patch of
//! one field of an `AccessKeyPolicy`'s status: the cheapest form of the status
//! writes a rotation makes (a ConfigMap's write, the floor before, costs the
//! API server less than a custom resource's: docs/benchmarks.md).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use keyrotor::{
    cloudflare::{BudgetRegistry, ClientSettings, CloudflareClient, Credentials},
    crd::AccessKeyPolicy,
};
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
    /// One merge patch of an `AccessKeyPolicy`'s status answered by the API server.
    pub kubernetes_write: Duration,
    /// From the start of a patch to its watch event reaching a watcher (the
    /// event often arrives before the patch's own answer).
    pub watch_delivery: Duration,
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// Samples of each floor.
const SAMPLES: usize = 21;
/// Status writes made and left out before the samples: the first writes of a
/// resource after the API server's start are slower.
const WARM_UP: usize = 5;

/// Measures the floors with [`SAMPLES`] samples each.
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
    for _ in 0..SAMPLES {
        let start = Instant::now();
        client
            .get_config(&token, "ffffffff000000000000000000000000")
            .await?;
        rtts.push(start.elapsed());
    }

    // No operator takes the probe: each stage's operator selects its stage's label.
    let namespace = world.plane.create_namespace("bench-floors").await?;
    let policies: Api<AccessKeyPolicy> = Api::namespaced(world.client.clone(), &namespace);
    let probe: AccessKeyPolicy = serde_json::from_value(json!({
        "apiVersion": "keyrotor.dev/v1alpha1",
        "kind": "AccessKeyPolicy",
        "metadata": {"name": "probe"},
        "spec": {
            "accountId": "ffffffff000000000000000000000000",
            "keyRotationIntervalDays": 30,
            "credentialsRef": {"name": "floor"},
        },
    }))?;
    policies.create(&PostParams::default(), &probe).await?;
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let watch = tokio::spawn({
        let policies = policies.clone();
        async move {
            let mut events = watcher(policies, watcher::Config::default())
                .applied_objects()
                .boxed();
            while let Some(Ok(policy)) = events.next().await {
                if let Some(value) = policy
                    .status
                    .and_then(|status| status.last_handled_rotate_request)
                {
                    let _ = seen_tx.send((value, Instant::now()));
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut writes, mut deliveries) = (Vec::new(), Vec::new());
    for n in 0..WARM_UP + SAMPLES {
        let value = format!("floor-{n}");
        let start = Instant::now();
        policies
            .patch_status(
                "probe",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"lastHandledRotateRequest": value}})),
            )
            .await?;
        let answered = Instant::now();
        while let Some((seen, at)) = seen_rx.recv().await {
            if seen == value {
                if n >= WARM_UP {
                    writes.push(answered - start);
                    deliveries.push(at.saturating_duration_since(start));
                }
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
