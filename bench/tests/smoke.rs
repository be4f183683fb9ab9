//! The benchmark's smoke mode (N = 50) runs with the tests: every stage works
//! and the behavioural targets hold. Speed targets are the benchmark's job
//! (`hack/bench.sh`), not a test's.
//!
//! The operator binary is the workspace's own build: `cargo test --workspace`
//! (the test command) builds it next to this test's directory;
//! `KEYROTOR_BENCH_OPERATOR` names another.

use std::path::PathBuf;

/// `target/<profile>/keyrotor`, beside `target/<profile>/deps/` where this test runs.
fn operator_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("KEYROTOR_BENCH_OPERATOR") {
        return PathBuf::from(path);
    }
    let test = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = test
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps");
    let binary = profile_dir.join(format!("keyrotor{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo test --workspace` or `cargo build -p keyrotor` first",
        binary.display()
    );
    binary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_smoke_run_completes_and_meets_its_behavioural_targets() {
    let operator = operator_binary();
    let config = keyrotor_bench::BenchConfig::smoke(operator);
    let report = keyrotor_bench::run(&config)
        .await
        .expect("the smoke benchmark runs");
    println!("{}", report.markdown());

    let keyrotor = report.keyrotor();
    let convergence = &keyrotor.convergence[0];
    assert_eq!(convergence.policies, 50);
    assert!(
        convergence.cloudflare_requests_per_policy >= 2.0,
        "every policy needs a GET and a PUT"
    );
    assert!(convergence.cpu_seconds > 0.0, "the operator's CPU is read");
    assert!(
        convergence.passes.per_policy >= 1.0,
        "every policy's pass is counted, got {:?}",
        convergence.passes
    );
    assert!(
        convergence.passes.put_off_per_policy < convergence.passes.per_policy,
        "passes put off are a part of all passes"
    );
    assert!(
        convergence.startup_ms > 0.0 && convergence.startup_ms < convergence.seconds * 1e3,
        "start-up is measured up to the first Cloudflare call, got {} ms",
        convergence.startup_ms
    );

    let rotation = keyrotor.rotation.as_ref().expect("rotation stage ran");
    assert_eq!(rotation.requests, config.rotations);
    assert_eq!(
        rotation.posts, config.rotations,
        "exactly one POST per rotate request"
    );

    let steady = keyrotor.steady.as_ref().expect("steady stage ran");
    assert_eq!(
        steady.kubernetes_writes, 0,
        "no Kubernetes writes in steady state"
    );
    assert!(
        (0.7..=1.3).contains(&steady.gets_per_policy_per_check),
        "one GET per policy per check, got {}",
        steady.gets_per_policy_per_check
    );

    let budget = keyrotor.budget.as_ref().expect("budget stage ran");
    assert!(budget.requests > 0);
    assert!(
        budget.max_requests_in_10s as f64 <= budget.allowed_in_10s,
        "the simulator saw {} requests in 10 s from one credential, more than its budget",
        budget.max_requests_in_10s
    );
    assert!(
        budget.late_checks_metric > 0.0,
        "the late-check metric did not move"
    );
    // A policy learns at its own next (budget-paced) check, so within the window
    // only some have been told; none may be told wrongly (the condition is checked
    // by message text, which only an overcommitted credential produces).
    assert!(
        budget.policies_told_in_condition > 0,
        "no Ready message says checks run late"
    );
    assert!(steady.cpu_ms_per_check > 0.0);
    assert!(keyrotor.memory.iter().all(|m| m.peak_rss_mib > 1.0));
    assert!(keyrotor.idle_rss_mib.is_some_and(|rss| rss > 1.0));
}
