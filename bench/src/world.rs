//! The benchmark's world: the control plane, the simulator, bulk object creation.

use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Secret;
use keyrotor::crd::AccessKeyPolicy;
use keyrotor_cloudflare_sim::{
    AccountSeed, CredentialSeed, Faults, RateLimitConfig, RunningSimulator, SimConfig, Simulator,
};
use keyrotor_testenv::ControlPlane;
use kube::{
    Api,
    api::{ListParams, PostParams},
};
use serde_json::json;

/// Objects created at once.
const PARALLEL: usize = 64;

/// Runs `make(i)` for every `i` in `items`, [`PARALLEL`] at a time; the first error wins.
async fn for_each_parallel<F, Fut>(items: std::ops::Range<usize>, make: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    stream::iter(items)
        .map(make)
        .buffer_unordered(PARALLEL)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// The shared pieces.
pub struct World {
    /// The real control plane.
    pub plane: ControlPlane,
    /// Admin client.
    pub client: kube::Client,
    /// The simulator.
    pub sim: RunningSimulator,
}

impl World {
    /// Starts the control plane and the simulator with `rtt` of added latency.
    pub async fn start(rtt: Duration) -> anyhow::Result<Self> {
        let plane = ControlPlane::start(keyrotor_testenv::StartOptions {
            crds: vec![keyrotor_testenv::workspace_root().join("crds")],
            ..Default::default()
        })
        .await?;
        let client = plane.admin_client().await?;
        // Cloudflare's own limit stays on; the operator's budget is what keeps under it.
        let sim = Simulator::new(SimConfig {
            rate_limit: RateLimitConfig::default(),
            ..SimConfig::default()
        })
        .serve("127.0.0.1:0".parse()?)
        .await?;
        sim.simulator().set_faults(Faults {
            latency_ms: rtt.as_millis() as u64,
            ..Faults::default()
        });
        Ok(Self { plane, client, sim })
    }

    /// The account id of policy `i` in `stage`.
    pub fn account_id(stage: usize, i: usize) -> String {
        format!("{stage:08x}{i:024x}")
    }

    /// The token of credential `c` in `stage`.
    pub fn token(stage: usize, c: usize) -> String {
        format!("bench-token-{stage}-{c}")
    }

    /// Creates a stage: `n` accounts (42 days) and policies (30 days wanted),
    /// `credentials` Secrets and tokens, all labelled with the stage.
    pub async fn create_stage(
        &self,
        stage: usize,
        n: usize,
        credentials: usize,
        drift_interval: Duration,
    ) -> anyhow::Result<String> {
        let namespace = self
            .plane
            .create_namespace(&format!("bench-{stage}"))
            .await?;
        let sim = self.sim.simulator();
        for c in 0..credentials {
            sim.upsert_credential(CredentialSeed::token(
                format!("s{stage}-c{c}"),
                Self::token(stage, c),
            ));
        }
        // Last rotated a day ago, as a real account would be: an account
        // rotated within the second makes a rotate request wait for the next
        // second (the witness needs a later timestamp), which the rotation
        // stage would measure instead of the rotation itself.
        let last_rotation = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24);
        for i in 0..n {
            let mut account = AccountSeed::new(Self::account_id(stage, i)).with_interval(42);
            account.last_key_rotation_at = Some(last_rotation);
            sim.upsert_account(account);
        }
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        for_each_parallel(0..credentials, |c| {
            let secrets = secrets.clone();
            async move {
                let secret: Secret = serde_json::from_value(json!({
                    "metadata": {"name": format!("cf-{c}")},
                    "stringData": {"apiToken": Self::token(stage, c)},
                }))?;
                secrets.create(&PostParams::default(), &secret).await?;
                anyhow::Ok(())
            }
        })
        .await?;
        let policies: Api<AccessKeyPolicy> = Api::namespaced(self.client.clone(), &namespace);
        let interval = format!("{}s", drift_interval.as_secs().max(1));
        for_each_parallel(0..n, |i| {
                let policies = policies.clone();
                let interval = interval.clone();
                async move {
                    let policy: AccessKeyPolicy = serde_json::from_value(json!({
                        "apiVersion": "keyrotor.dev/v1alpha1",
                        "kind": "AccessKeyPolicy",
                        "metadata": {"name": format!("p-{i}"), "labels": {"keyrotor-bench/stage": stage.to_string()}},
                        "spec": {
                            "accountId": Self::account_id(stage, i),
                            "keyRotationIntervalDays": 30,
                            "credentialsRef": {"name": format!("cf-{}", i % credentials)},
                            "driftCheckInterval": interval,
                            "rotationCooldown": "0s",
                        },
                    }))?;
                    policies.create(&PostParams::default(), &policy).await?;
                    anyhow::Ok(())
                }
            })
            .await?;
        Ok(namespace)
    }

    /// Creates `count` Secrets nobody references, in their own namespace.
    pub async fn create_noise(&self, count: usize) -> anyhow::Result<()> {
        let namespace = self.plane.create_namespace("bench-noise").await?;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        for_each_parallel(0..count, |i| {
            let secrets = secrets.clone();
            async move {
                let secret: Secret = serde_json::from_value(json!({
                    "metadata": {"name": format!("noise-{i}")},
                    "stringData": {"data": "x".repeat(256)},
                }))?;
                secrets.create(&PostParams::default(), &secret).await?;
                anyhow::Ok(())
            }
        })
        .await?;
        Ok(())
    }

    /// The stage's policies.
    pub async fn policies(&self, namespace: &str) -> anyhow::Result<Vec<AccessKeyPolicy>> {
        let api: Api<AccessKeyPolicy> = Api::namespaced(self.client.clone(), namespace);
        Ok(api.list(&ListParams::default()).await?.items)
    }
}

/// Whether Ready is True for the current generation.
pub fn is_ready(policy: &AccessKeyPolicy) -> bool {
    policy.status.as_ref().is_some_and(|status| {
        status.conditions.iter().any(|c| {
            c.type_ == "Ready"
                && c.status == "True"
                && c.observed_generation == policy.metadata.generation
        })
    })
}
