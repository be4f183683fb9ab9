//! In a shared cluster, `/metrics` names every tenant's policies and their
//! schedules: only callers the API server says may `get /metrics` read it
//! (TokenReview + SubjectAccessReview, the chart's `-metrics-reader` role),
//! over TLS, while `/healthz` stays open for the kubelet. Also the start-up
//! rule that keeps the Cloudflare token off clear-text http, and the proxy
//! variables the Cloudflare client honours.

mod support;

use std::{
    net::TcpListener,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::{Scenario, apply_chart_rbac_objects, get_with_token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_only_to_readers_the_api_server_allows_and_healthz_stays_open() {
    let mut s = Scenario::new("tmetrics").await;
    let release_ns = s.other_namespace("tmetrics-release").await;
    let scraper_ns = s.other_namespace("tmetrics-scraper").await;
    // The chart's RBAC as installed in namespaced mode, under a per-test name
    // (its ClusterRoles are cluster-wide), with one ServiceAccount bound to
    // the metrics-reader role through the chart's `metrics.readers`.
    let fullname = format!("fullnameOverride=km-{release_ns}");
    let watch = format!("watchNamespaces={{{}}}", s.namespace);
    let reader_ns = format!("metrics.readers[0].namespace={scraper_ns}");
    let rbac = apply_chart_rbac_objects(
        s.plane,
        &release_ns,
        &[
            "--set",
            &fullname,
            "--set",
            "serviceAccount.name=kr-keyrotor",
            "--set",
            &watch,
            "--set",
            "metrics.readers[0].kind=ServiceAccount",
            "--set",
            "metrics.readers[0].name=scraper",
            "--set",
            &reader_ns,
        ],
    );
    assert!(rbac.contains("-metrics-reader"), "{rbac}");
    let token = |ns: String, name: &'static str| {
        let plane = s.plane;
        async move {
            plane
                .service_account_token(&ns, name, Duration::from_secs(3600))
                .await
                .expect("token")
        }
    };
    let operator_token = token(release_ns.clone(), "kr-keyrotor").await;
    let scraper_token = token(scraper_ns.clone(), "scraper").await;
    let stranger_token = token(scraper_ns.clone(), "stranger").await;
    let kubeconfig = s.plane.dir().join(format!("{release_ns}-sa-kubeconfig"));
    s.plane
        .kubeconfig_for_token(&operator_token, &kubeconfig)
        .expect("kubeconfig");

    // The operator with only its chart ServiceAccount's rights, metrics as the chart serves them.
    s.apply_token_secret().await;
    s.start_operator_with(
        &[
            "--metrics-auth",
            "kubernetes",
            "--metrics-tls",
            "true",
            // The chart's Lease rights are in the release namespace.
            "--claims-namespace",
            &release_ns,
        ],
        &[("KUBECONFIG", &kubeconfig.to_string_lossy())],
    );
    s.create_policy("p", serde_json::json!({})).await;
    s.wait_for("p", "Ready", support::is_ready).await;
    let operator = s.operator.as_ref().expect("operator");
    let base = operator.probe_url().await;
    assert!(base.starts_with("https://"), "{base}");
    let metrics = format!("{base}/metrics");

    let (status, _) = get_with_token(&metrics, None).await.expect("answer");
    assert_eq!(status, 401, "no token");
    let (status, _) = get_with_token(&metrics, Some("not-a-token"))
        .await
        .expect("answer");
    assert_eq!(status, 401, "a token the API server does not know");
    let (status, body) = get_with_token(&metrics, Some(&stranger_token))
        .await
        .expect("answer");
    assert_eq!(status, 403, "a ServiceAccount without the reader role");
    assert!(!body.contains(&s.namespace), "{body}");
    let first = Instant::now();
    let (status, body) = get_with_token(&metrics, Some(&scraper_token))
        .await
        .expect("answer");
    let first = first.elapsed();
    assert_eq!(status, 200, "the reader: {body}");
    assert!(body.contains("keyrotor_policy_condition{"), "{body}");
    assert!(body.contains(&s.namespace), "{body}");
    // Twice more: the cached decisions answer the same.
    let cached = Instant::now();
    for _ in 0..2 {
        let (status, _) = get_with_token(&metrics, Some(&scraper_token))
            .await
            .expect("answer");
        assert_eq!(status, 200);
        let (status, _) = get_with_token(&metrics, Some(&stranger_token))
            .await
            .expect("answer");
        assert_eq!(status, 403);
    }
    eprintln!(
        "[tenant-metrics] first allowed scrape (TokenReview + SubjectAccessReview + TLS handshake): {} ms; cached allowed + refused pair: {} ms",
        first.as_millis(),
        cached.elapsed().as_millis() / 2
    );

    // The kubelet's probes need no token.
    let (status, body) = get_with_token(&format!("{base}/healthz"), None)
        .await
        .expect("answer");
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, _) = get_with_token(&format!("{base}/readyz"), None)
        .await
        .expect("answer");
    assert_eq!(status, 200);

    // Clear-text http on the same port gets no answer: a token is never read off plain http.
    let plain = base.replacen("https://", "http://", 1);
    assert!(
        get_with_token(&format!("{plain}/metrics"), Some(&scraper_token))
            .await
            .is_err(),
        "plain http was answered"
    );

    let log = operator.log();
    for secret in [&scraper_token, &stranger_token, &operator_token] {
        assert!(!log.contains(secret.as_str()), "a token reached the log");
    }
    assert!(
        !log.contains("cannot decide who may read /metrics"),
        "a review failed (RBAC of the reviews?):\n{log}"
    );
}

/// A loopback listener that counts the connections it gets (none expected).
fn connection_counter() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    (format!("http://{address}"), count)
}

#[test]
fn an_http_api_url_to_another_host_is_refused_at_start_up_before_any_request() {
    // Any request the binary made would go through this "proxy" (and reach
    // nothing beyond loopback); none may.
    let (proxy, connections) = connection_counter();
    let run = |extra: &[&str]| {
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_keyrotor"))
            .args([
                "run",
                "--cloudflare-api-url",
                "http://example.invalid/client/v4",
            ])
            .args(extra)
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env("HTTP_PROXY", &proxy)
            .env("HTTPS_PROXY", &proxy)
            .env("ALL_PROXY", &proxy)
            .env_remove("KEYROTOR_ALLOW_INSECURE_API_URL")
            .stdin(Stdio::null())
            .output()
            .expect("runs");
        (output, started.elapsed())
    };
    let (output, took) = run(&[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--cloudflare-api-url") && stderr.contains("--allow-insecure-api-url"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a connection was made"
    );
    // With the explicit flag, the URL is accepted: the start gets as far as the
    // (missing) Kubernetes configuration instead.
    let (output, _) = run(&["--allow-insecure-api-url"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("--allow-insecure-api-url"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloudflare_client_goes_through_https_proxy_when_it_is_set() {
    // docs/configuration.md: HTTPS_PROXY / NO_PROXY are honoured. A loopback
    // listener stands in for the proxy; the client must ask it to CONNECT to
    // the API host (so the proxy sees no token, only the tunnel's end).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let proxy = format!("http://{}", listener.local_addr().expect("address"));
    let accepted = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let (mut stream, _) = listener.accept().await.expect("a connection");
        let mut head = vec![0; 1024];
        let n = stream.read(&mut head).await.expect("read");
        String::from_utf8_lossy(&head[..n]).into_owned()
        // Dropping the stream refuses the tunnel.
    });
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyrotor"))
        .args(["account", "get", "--account-id", support::ACCOUNT])
        .args(["--api-url", "https://api.cloudflare.invalid/client/v4"])
        .env("CLOUDFLARE_API_TOKEN", support::TOKEN)
        .env("HTTPS_PROXY", &proxy)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .stdin(Stdio::null())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("the command ends")
        .expect("runs");
    let head = tokio::time::timeout(Duration::from_secs(5), accepted)
        .await
        .expect("the proxy was asked")
        .expect("join");
    assert!(
        head.starts_with("CONNECT api.cloudflare.invalid:443 "),
        "{head}"
    );
    assert!(
        !head.contains(support::TOKEN),
        "the token reached the proxy"
    );
    assert!(!output.status.success());
}
