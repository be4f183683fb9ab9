//! What tests get from the shared control plane: the pinned API server, the
//! workspace CRD served, namespaces, ServiceAccount tokens and kubectl.

use std::error::Error;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use keyrotor_testenv::{client_from_kubeconfig, shared};
use kube::Api;
use kube::api::{ListParams, PostParams};

type TestResult = Result<(), Box<dyn Error>>;

const CRD_NAME: &str = "accesskeypolicies.keyrotor.dev";

#[tokio::test]
async fn api_server_reports_the_pinned_version() -> TestResult {
    let plane = shared().await;
    let version = plane.admin_client().await?.apiserver_version().await?;
    assert_eq!(version.git_version, "v1.36.3", "{}", plane.logs());
    assert!(plane.server_url().starts_with("https://127.0.0.1:"));
    Ok(())
}

#[tokio::test]
async fn workspace_crd_is_established_and_served() -> TestResult {
    let plane = shared().await;
    let client = plane.admin_client().await?;
    let crd = Api::<CustomResourceDefinition>::all(client.clone())
        .get(CRD_NAME)
        .await?;
    let established = crd
        .status
        .and_then(|status| status.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(established, "{CRD_NAME} is not Established");

    let namespace = plane.create_namespace("crd-served").await?;
    let path = format!("/apis/keyrotor.dev/v1alpha1/namespaces/{namespace}/accesskeypolicies");
    let list = client
        .request_text(http::Request::get(path).body(Vec::new())?)
        .await?;
    let list: serde_json::Value = serde_json::from_str(&list)?;
    assert_eq!(list["kind"], "AccessKeyPolicyList");
    assert_eq!(list["items"], serde_json::json!([]));
    Ok(())
}

#[tokio::test]
async fn created_namespaces_are_fresh_and_exist() -> TestResult {
    let plane = shared().await;
    let first = plane.create_namespace("fresh").await?;
    let second = plane.create_namespace("fresh").await?;
    assert_ne!(first, second);
    assert!(first.starts_with("fresh-"), "{first}");
    let namespaces: Api<Namespace> = Api::all(plane.admin_client().await?);
    for name in [&first, &second] {
        assert!(namespaces.get_opt(name).await?.is_some(), "{name} missing");
    }
    Ok(())
}

#[tokio::test]
async fn service_account_token_authenticates_but_rbac_forbids_listing_secrets() -> TestResult {
    let plane = shared().await;
    let namespace = plane.create_namespace("rbac").await?;
    let token = plane
        .service_account_token(&namespace, "reader", Duration::from_secs(3600))
        .await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    plane.kubeconfig_for_token(&token, &kubeconfig)?;
    let client = client_from_kubeconfig(&kubeconfig).await?;

    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await?;
    let username = review
        .status
        .and_then(|status| status.user_info)
        .and_then(|user| user.username);
    assert_eq!(
        username.as_deref(),
        Some(format!("system:serviceaccount:{namespace}:reader").as_str())
    );

    let denied = Api::<Secret>::namespaced(client, &namespace)
        .list(&ListParams::default())
        .await;
    match denied {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("listing secrets should be forbidden, got {other:?}"),
    }

    // A second call reuses the existing ServiceAccount.
    plane
        .service_account_token(&namespace, "reader", Duration::from_secs(3600))
        .await?;
    Ok(())
}

#[tokio::test]
async fn forged_token_is_not_authenticated() -> TestResult {
    let plane = shared().await;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    plane.kubeconfig_for_token("not-a-real-token", &kubeconfig)?;
    let client = client_from_kubeconfig(&kubeconfig).await?;
    match Api::<Namespace>::all(client).get_opt("default").await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 401, "{status:?}"),
        other => panic!("a forged token should be rejected, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn kubectl_uses_the_admin_kubeconfig() -> TestResult {
    let plane = shared().await;
    let output = plane
        .kubectl()
        .args(["get", "crd", CRD_NAME, "-o"])
        .arg(r#"jsonpath={.status.conditions[?(@.type=="Established")].status}"#)
        .output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "True");
    Ok(())
}

#[tokio::test]
async fn both_servers_report_resident_memory() -> TestResult {
    let plane = shared().await;
    let memory = plane.memory_kib();
    let names: Vec<&str> = memory.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["etcd", "kube-apiserver"]);
    for (name, kib) in &memory {
        assert!(*kib > 1024, "{name} RSS {kib} KiB");
        eprintln!("{name}: {} MiB resident", kib / 1024);
    }
    Ok(())
}
