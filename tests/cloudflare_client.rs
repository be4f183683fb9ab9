//! The Cloudflare client against the simulator on loopback: every error class,
//! the retry bounds, the 429 block, and no secret in any error.

use std::{sync::Arc, time::Duration};

use keyrotor::cloudflare::{
    BudgetRegistry, ClientSettings, CloudflareClient, CloudflareError, Credentials, RetryPolicy,
    TransportKind,
};
use keyrotor_cloudflare_sim::{
    AccountSeed, CredentialSeed, Faults, Force429, RateLimitConfig, RunningSimulator, SimConfig,
    Simulator,
};

const ACCOUNT: &str = "023e105f4ecef8ad9ca31a8372d0c353";
const OTHER_ACCOUNT: &str = "fedcba9876543210fedcba9876543210";
const DISABLED_ACCOUNT: &str = "00000000000000000000000000000000";
const TOKEN: &str = "tok-CLIENT-SECRET-1";
const SCOPED_TOKEN: &str = "tok-CLIENT-SECRET-SCOPED";
const READ_ONLY_TOKEN: &str = "tok-CLIENT-SECRET-READONLY";
const API_KEY: &str = "key-CLIENT-SECRET-2";
const EMAIL: &str = "secret-owner@example.com";
const SECRETS: [&str; 5] = [TOKEN, SCOPED_TOKEN, READ_ONLY_TOKEN, API_KEY, EMAIL];

async fn simulator() -> RunningSimulator {
    let config = SimConfig {
        accounts: vec![
            AccountSeed::new(ACCOUNT).with_interval(42),
            AccountSeed::new(OTHER_ACCOUNT),
            AccountSeed::new(DISABLED_ACCOUNT).disabled(),
        ],
        credentials: vec![
            CredentialSeed::token("main", TOKEN),
            CredentialSeed::token("scoped", SCOPED_TOKEN).for_accounts([OTHER_ACCOUNT]),
            CredentialSeed::token("reader", READ_ONLY_TOKEN).read_only(),
            CredentialSeed::global_key("legacy", API_KEY, EMAIL),
        ],
        rate_limit: RateLimitConfig::default(),
        timestamps: Default::default(),
    };
    Simulator::new(config)
        .serve("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("simulator starts")
}

fn client_for(base_url: &str, request_timeout: Duration) -> CloudflareClient {
    let settings = ClientSettings {
        base_url: base_url.to_owned(),
        connect_timeout: Duration::from_secs(2),
        request_timeout,
        retry: RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
        },
    };
    CloudflareClient::new(&settings, Arc::new(BudgetRegistry::default())).expect("client builds")
}

fn client(sim: &RunningSimulator) -> CloudflareClient {
    client_for(&sim.base_url(), Duration::from_secs(5))
}

fn token() -> Credentials {
    Credentials::api_token(TOKEN)
}

fn assert_no_secret(err: &CloudflareError) {
    let printed = format!("{err} {err:?}");
    for secret in SECRETS {
        assert!(!printed.contains(secret), "{printed}");
    }
}

fn count(sim: &RunningSimulator, method: &str) -> usize {
    sim.simulator()
        .requests()
        .iter()
        .filter(|r| r.method == method)
        .count()
}

#[tokio::test]
async fn get_update_and_rotate_round_trip_with_either_kind_of_credential() {
    let sim = simulator().await;
    let client = client(&sim);
    for credentials in [token(), Credentials::global_key(API_KEY, EMAIL)] {
        let read = client.get_config(&credentials, ACCOUNT).await.expect("get");
        assert!(read.last_key_rotation_at.is_some());
        let updated = client
            .update_interval(&credentials, ACCOUNT, 30)
            .await
            .expect("update");
        assert_eq!(updated.key_rotation_interval_days, Some(30));
        let rotated = client.rotate(&credentials, ACCOUNT).await.expect("rotate");
        assert!(rotated.last_key_rotation_at > read.last_key_rotation_at);
    }
    let account = sim.simulator().account(ACCOUNT).expect("account");
    assert_eq!(account.key_rotation_interval_days, 30);
    assert_eq!(account.rotations, 2);
    let credentials: Vec<String> = sim
        .simulator()
        .requests()
        .iter()
        .map(|r| r.credential.clone())
        .collect();
    assert_eq!(
        credentials,
        ["main", "main", "main", "legacy", "legacy", "legacy"]
    );
}

#[tokio::test]
async fn rejected_credentials_are_authentication_errors_with_cloudflare_codes() {
    let sim = simulator().await;
    let client = client(&sim);
    let cases = [
        (Credentials::api_token("tok-WRONG"), ACCOUNT, 9109),
        (Credentials::global_key("wrong-key", EMAIL), ACCOUNT, 9103),
        (Credentials::api_token(SCOPED_TOKEN), ACCOUNT, 10000),
    ];
    for (credentials, account, code) in cases {
        let err = client
            .get_config(&credentials, account)
            .await
            .expect_err("refused");
        assert!(
            matches!(err, CloudflareError::Authentication { code: Some(c), .. } if c == code),
            "{err:?}"
        );
        assert_eq!(err.reason(), "InvalidCredentials");
        assert_no_secret(&err);
    }
    let read_only = client
        .update_interval(&Credentials::api_token(READ_ONLY_TOKEN), ACCOUNT, 30)
        .await
        .expect_err("read-only token cannot write");
    assert!(
        matches!(
            read_only,
            CloudflareError::Authentication {
                code: Some(10000),
                ..
            }
        ),
        "{read_only:?}"
    );
    // 4xx are not retried: one request per call.
    assert_eq!(sim.simulator().requests().len(), 4);
}

#[tokio::test]
async fn unknown_or_disabled_accounts_are_not_found() {
    let sim = simulator().await;
    let client = client(&sim);
    let unknown = client
        .get_config(&token(), "ffffffffffffffffffffffffffffffff")
        .await
        .expect_err("unknown");
    assert!(
        matches!(
            unknown,
            CloudflareError::AccountNotFound {
                status: 404,
                code: Some(7003),
                ..
            }
        ),
        "{unknown:?}"
    );
    let disabled = client
        .get_config(&token(), DISABLED_ACCOUNT)
        .await
        .expect_err("disabled");
    assert!(
        matches!(
            disabled,
            CloudflareError::AccountNotFound {
                code: Some(12109),
                ..
            }
        ),
        "{disabled:?}"
    );
}

#[tokio::test]
async fn an_out_of_range_interval_is_rejected_with_the_field_pointer() {
    let sim = simulator().await;
    let err = client(&sim)
        .update_interval(&token(), ACCOUNT, 20)
        .await
        .expect_err("out of range");
    let CloudflareError::Rejected {
        status,
        code,
        pointer,
        ..
    } = &err
    else {
        panic!("expected Rejected, got {err:?}");
    };
    assert_eq!(*status, 400);
    assert!(code.is_some_and(|c| c >= 1000));
    assert_eq!(pointer.as_deref(), Some("/key_rotation_interval_days"));
    assert_eq!(count(&sim, "PUT"), 1, "a rejected request is not retried");
}

#[tokio::test]
async fn a_429_blocks_the_credential_until_retry_after_has_passed() {
    let sim = simulator().await;
    let client = client(&sim);
    sim.simulator().set_faults(Faults {
        force_429: Some(Force429 {
            count: 1,
            retry_after_seconds: Some(1),
        }),
        ..Faults::default()
    });
    let err = client.get_config(&token(), ACCOUNT).await.expect_err("429");
    assert_eq!(
        err,
        CloudflareError::RateLimited {
            retry_after: Duration::from_secs(1)
        }
    );
    // During the block a call is put off at once, without being sent: the
    // caller (a reconcile pass) comes back when the block ends.
    let started = std::time::Instant::now();
    let err = client
        .get_config(&token(), ACCOUNT)
        .await
        .expect_err("put off during the block");
    let CloudflareError::PutOff { wait } = err else {
        panic!("expected PutOff, got {err:?}");
    };
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "a put-off call does not wait: {:?}",
        started.elapsed()
    );
    assert!(
        wait > Duration::from_millis(500) && wait <= Duration::from_secs(1),
        "put off until Retry-After has passed: {wait:?}"
    );
    assert_eq!(count(&sim, "GET"), 1, "no call was made during the block");
    tokio::time::sleep(wait).await;
    client
        .get_config(&token(), ACCOUNT)
        .await
        .expect("after the wait");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "called before Retry-After: {:?}",
        started.elapsed()
    );
    assert_eq!(count(&sim, "GET"), 2);
    // Another credential is not blocked.
    let other = std::time::Instant::now();
    client
        .get_config(&Credentials::global_key(API_KEY, EMAIL), ACCOUNT)
        .await
        .expect("other credential");
    assert!(other.elapsed() < Duration::from_millis(900));
}

#[tokio::test]
async fn a_429_without_retry_after_waits_five_minutes() {
    let sim = simulator().await;
    let client = client(&sim);
    sim.simulator().set_faults(Faults {
        force_429: Some(Force429 {
            count: 1,
            retry_after_seconds: None,
        }),
        ..Faults::default()
    });
    let err = client.get_config(&token(), ACCOUNT).await.expect_err("429");
    assert_eq!(
        err,
        CloudflareError::RateLimited {
            retry_after: Duration::from_secs(300)
        }
    );
    let blocked = client
        .budgets()
        .for_credentials(&token())
        .blocked_until()
        .expect("blocked");
    let left = blocked - tokio::time::Instant::now();
    assert!(
        left > Duration::from_secs(295) && left <= Duration::from_secs(300),
        "{left:?}"
    );
}

#[tokio::test]
async fn the_simulators_own_rate_limit_reaches_the_client_as_rate_limited() {
    let sim = simulator().await;
    sim.simulator().set_rate_limit(RateLimitConfig {
        limit: 2,
        window: Duration::from_secs(60),
    });
    let client = client(&sim);
    client.get_config(&token(), ACCOUNT).await.expect("1");
    client.get_config(&token(), ACCOUNT).await.expect("2");
    let err = client
        .get_config(&token(), ACCOUNT)
        .await
        .expect_err("3rd is over the limit");
    assert!(
        matches!(err, CloudflareError::RateLimited { retry_after } if retry_after > Duration::from_secs(55)),
        "{err:?}"
    );
}

/// A retry the budget puts off reports the 5xx that led to it: a busy
/// credential must not hide an outage behind put-offs.
#[tokio::test]
async fn a_retry_put_off_by_the_budget_reports_the_server_error() {
    let sim = simulator().await;
    sim.simulator().set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let settings = ClientSettings {
        base_url: sim.base_url(),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
        },
    };
    // One request a minute: the first retry has no slot within the hold.
    let budgets = Arc::new(BudgetRegistry::new(1, Duration::from_secs(60), 1));
    let client = CloudflareClient::new(&settings, budgets).expect("client builds");
    let err = client.get_config(&token(), ACCOUNT).await.expect_err("5xx");
    assert!(
        matches!(err, CloudflareError::Server { attempts: 1, .. }),
        "{err:?}"
    );
    assert_eq!(count(&sim, "GET"), 1, "the retry was not sent");
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    let sim = simulator().await;
    sim.simulator().set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let client = client(&sim);
    let err = client.get_config(&token(), ACCOUNT).await.expect_err("5xx");
    assert!(
        matches!(err, CloudflareError::Server { attempts: 4, .. }),
        "{err:?}"
    );
    assert_eq!(err.reason(), "ServerError");
    assert_eq!(count(&sim, "GET"), 4, "first attempt plus three retries");
    let put = client
        .update_interval(&token(), ACCOUNT, 30)
        .await
        .expect_err("5xx");
    assert!(matches!(put, CloudflareError::Server { attempts: 4, .. }));
    // A rotation is never retried blindly: the reconciler asks the account instead.
    let rotate = client.rotate(&token(), ACCOUNT).await.expect_err("5xx");
    assert!(
        matches!(rotate, CloudflareError::Server { attempts: 1, .. }),
        "{rotate:?}"
    );
    assert_eq!(count(&sim, "POST"), 1);
    assert_no_secret(&err);
}

#[tokio::test]
async fn a_short_burst_of_errors_is_ridden_out_by_retries() {
    let sim = simulator().await;
    sim.simulator().set_faults(Faults {
        html: 2,
        error_status: Some(503),
        ..Faults::default()
    });
    let read = client(&sim)
        .get_config(&token(), ACCOUNT)
        .await
        .expect("recovers");
    assert_eq!(read.key_rotation_interval_days, Some(42));
    assert_eq!(count(&sim, "GET"), 3);
}

#[tokio::test]
async fn html_and_truncated_bodies_are_malformed_responses() {
    let sim = simulator().await;
    let client = client(&sim);
    sim.simulator().set_faults(Faults {
        html: 1,
        error_status: Some(200),
        ..Faults::default()
    });
    let html = client
        .get_config(&token(), ACCOUNT)
        .await
        .expect_err("html");
    assert!(
        matches!(&html, CloudflareError::Malformed { detail, .. } if detail.contains("HTML")),
        "{html:?}"
    );
    sim.simulator().set_faults(Faults {
        truncated: 1,
        ..Faults::default()
    });
    let cut = client
        .get_config(&token(), ACCOUNT)
        .await
        .expect_err("truncated");
    assert!(
        matches!(&cut, CloudflareError::Malformed { detail, .. } if detail.contains("JSON")),
        "{cut:?}"
    );
    assert_eq!(cut.reason(), "MalformedResponse");
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_transport_errors() {
    let sim = simulator().await;
    sim.simulator().set_faults(Faults {
        hang: 10,
        ..Faults::default()
    });
    let slow = client_for(&sim.base_url(), Duration::from_millis(200));
    let err = slow.get_config(&token(), ACCOUNT).await.expect_err("hangs");
    assert!(
        matches!(
            err,
            CloudflareError::Transport {
                kind: TransportKind::Timeout,
                attempts: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert_no_secret(&err);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/client/v4", closed.local_addr().expect("addr"));
    drop(closed);
    let refused = client_for(&url, Duration::from_secs(2))
        .get_config(&token(), ACCOUNT)
        .await
        .expect_err("refused");
    assert!(
        matches!(
            refused,
            CloudflareError::Transport {
                kind: TransportKind::Connect,
                attempts: 4,
                ..
            }
        ),
        "{refused:?}"
    );
    assert_eq!(refused.reason(), "TransportError");
}

#[tokio::test]
async fn the_simulator_never_logs_a_secret() {
    let sim = simulator().await;
    let client = client(&sim);
    let _ = client.get_config(&token(), ACCOUNT).await;
    let _ = client
        .get_config(&Credentials::global_key(API_KEY, EMAIL), ACCOUNT)
        .await;
    let _ = client
        .get_config(&Credentials::api_token("tok-WRONG-SECRET"), ACCOUNT)
        .await;
    let log = format!("{:?}", sim.simulator().requests());
    for secret in SECRETS.iter().chain(&["tok-WRONG-SECRET"]) {
        assert!(!log.contains(secret), "{log}");
    }
}
