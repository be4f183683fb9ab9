//! Hostile inputs, each with its exact outcome: policies the API server must
//! refuse or prune, broken Secrets, Cloudflare answers of every odd shape (from
//! a raw TCP server that sends exact bytes), and odd rotate annotations.

mod support;

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_openapi::{ByteString, api::core::v1::Secret};
use keyrotor::{
    cloudflare::{
        AccountKeyConfig, BudgetRegistry, ClientSettings, CloudflareClient, CloudflareError,
        Credentials, RetryPolicy, TransportKind,
    },
    crd::RotateOutcome,
    decide::RotateRequest,
};
use keyrotor_cloudflare_sim::AccountSeed;
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    core::DynamicObject,
};
use serde_json::{Value, json};
use support::{
    ACCOUNT, FORCE, ROTATE, Scenario, TOKEN, api_message, dynamic_api, is_ready,
    last_handled_request, policy_object, ready_message, valid_spec,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

// ---- helpers ----------------------------------------------------------------

/// An account id of its own for case `n`, created in the simulator.
fn account_for(s: &Scenario, n: u32) -> String {
    let id = format!("{:032x}", 0xa000_0000_u64 + u64::from(n));
    s.sim()
        .upsert_account(AccountSeed::new(&id).with_interval(42));
    id
}

fn calls_for(s: &Scenario, account: &str) -> Vec<String> {
    s.sim()
        .requests()
        .into_iter()
        .filter(|r| r.account_id.as_deref() == Some(account))
        .map(|r| r.method)
        .collect()
}

/// Creates a Secret from raw bytes (`data`, so values need not be text).
async fn apply_binary_secret(s: &Scenario, name: &str, data: &[(&str, &[u8])]) {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(s.namespace.clone()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    let api: Api<Secret> = Api::namespaced(s.client.clone(), &s.namespace);
    let _ = api.delete(name, &DeleteParams::default()).await;
    api.create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
}

// ---- 2. Policies the server accepts and the operator must survive --------------

/// Durations near Go's limit pass the schema; the operator must neither crash
/// nor stop reconciling the namespace because of one such policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_at_the_edge_of_the_schema_are_survived() {
    let mut s = Scenario::new("hostile-dur").await;
    s.apply_token_secret().await;
    s.start_operator();
    // 100000h (11 years): a requeue that far ahead must not panic the scheduler.
    let far = account_for(&s, 1);
    s.create_policy(
        "far-drift",
        json!({"accountId": far, "driftCheckInterval": "100000h"}),
    )
    .await;
    let p = s.wait_for("far-drift", "Ready", is_ready).await;
    assert_eq!(
        ready_message(&p),
        "the account rotates its key every 30 days"
    );
    // 1ns: checked at the floor, and the Ready message says so.
    let tiny = account_for(&s, 2);
    s.create_policy(
        "tiny-drift",
        json!({"accountId": tiny, "driftCheckInterval": "1ns"}),
    )
    .await;
    let p = s.wait_for("tiny-drift", "Ready", is_ready).await;
    assert_eq!(
        ready_message(&p),
        "the account rotates its key every 30 days; checked every 1s, the operator's floor, not every 1ns"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let operator = s.operator.as_mut().expect("operator");
    assert_eq!(
        operator.wait_exit(Duration::ZERO).await,
        None,
        "operator died:\n{}",
        operator.log()
    );
}

/// `rotationCooldown: 2562048h` matches the schema's pattern and length but is
/// beyond what the operator's duration type holds (Go's limit, about 292
/// years): the object cannot be read, and the watch of the whole scope breaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_policy_with_an_unparseable_duration_does_not_stop_the_others() {
    let mut s = Scenario::new("hostile-poison").await;
    s.apply_token_secret().await;
    let api = dynamic_api(s.client.clone(), &s.namespace);
    let mut poison = policy_object("poison", valid_spec());
    poison["spec"]["rotationCooldown"] = json!("2562048h");
    let poison: DynamicObject = serde_json::from_value(poison).expect("object");
    api.create(&PostParams::default(), &poison)
        .await
        .expect("the API server accepts it");
    s.start_operator();
    let other = account_for(&s, 3);
    s.create_policy("healthy", json!({"accountId": other}))
        .await;
    s.wait_for("healthy", "Ready despite the poison policy", is_ready)
        .await;
}

// ---- 3. Secrets ------------------------------------------------------------------

/// Secret name, its data, the expected Ready reason and message (None: Ready True).
type SecretCase<'a> = (&'a str, Vec<(&'a str, &'a [u8])>, &'a str, Option<&'a str>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_secrets_each_give_their_exact_reason_and_no_cloudflare_call() {
    let mut s = Scenario::new("hostile-sec").await;
    let huge = vec![b'a'; 5000];
    let over_limit = vec![b'a'; 1024 * 1024 + 1];
    let cases: Vec<SecretCase> = vec![
        (
            "wrong-key",
            vec![("apitoken", TOKEN.as_bytes())],
            "InvalidCredentials",
            Some("Secret wrong-key has no apiToken, nor apiKey and email (keys present: apitoken)"),
        ),
        (
            "no-data",
            vec![],
            "InvalidCredentials",
            Some("Secret no-data has no apiToken, nor apiKey and email (keys present: none)"),
        ),
        (
            "empty",
            vec![("apiToken", &b""[..])],
            "InvalidCredentials",
            Some("Secret empty key apiToken is empty"),
        ),
        (
            "only-space",
            vec![("apiToken", &b" \n\t "[..])],
            "InvalidCredentials",
            Some("Secret only-space key apiToken is empty"),
        ),
        (
            "inner-space",
            vec![("apiToken", &b"tok en"[..])],
            "InvalidCredentials",
            Some("Secret inner-space key apiToken contains whitespace or control characters"),
        ),
        (
            "nul-byte",
            vec![("apiToken", &b"tok\0en"[..])],
            "InvalidCredentials",
            Some("Secret nul-byte key apiToken contains whitespace or control characters"),
        ),
        (
            "not-utf8",
            vec![("apiToken", &b"\xff\xfe\x41"[..])],
            "InvalidCredentials",
            Some("Secret not-utf8 key apiToken is not UTF-8 text"),
        ),
        (
            "huge",
            vec![("apiToken", huge.as_slice())],
            "InvalidCredentials",
            Some("Secret huge key apiToken is longer than 4096 bytes"),
        ),
        (
            "key-no-email",
            vec![("apiKey", support::API_KEY.as_bytes())],
            "InvalidCredentials",
            Some(
                "Secret key-no-email has apiKey but not email; a global key needs both apiKey and email",
            ),
        ),
        (
            "token-and-email",
            vec![
                ("apiToken", TOKEN.as_bytes()),
                ("email", support::EMAIL.as_bytes()),
            ],
            "InvalidCredentials",
            Some(
                "Secret token-and-email holds both apiToken and apiKey/email; keep exactly one kind",
            ),
        ),
        ("padded-token", vec![], "Reconciled", None),
        ("padded-key", vec![], "Reconciled", None),
    ];
    let padded_token = format!("\n  {TOKEN} \r\n");
    let padded_key = format!("\t{} \n", support::API_KEY);
    let padded_email = format!(" {}\n", support::EMAIL);
    for (name, data, _, _) in &cases {
        match *name {
            "padded-token" => {
                apply_binary_secret(&s, name, &[("apiToken", padded_token.as_bytes())]).await;
            }
            "padded-key" => {
                apply_binary_secret(
                    &s,
                    name,
                    &[
                        ("apiKey", padded_key.as_bytes()),
                        ("email", padded_email.as_bytes()),
                    ],
                )
                .await;
            }
            _ => apply_binary_secret(&s, name, data).await,
        }
    }
    // The API server itself refuses a Secret over 1 MiB.
    let api: Api<Secret> = Api::namespaced(s.client.clone(), &s.namespace);
    let too_big = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("too-big".into()),
            ..Default::default()
        },
        data: Some([("apiToken".to_owned(), ByteString(over_limit))].into()),
        ..Default::default()
    };
    let refused = api
        .create(&PostParams::default(), &too_big)
        .await
        .map(|_| ())
        .map_err(api_message)
        .expect_err("over 1 MiB");
    assert!(
        refused.contains("Too long") && refused.contains("1048576"),
        "{refused}"
    );

    s.start_operator();
    let mut accounts = Vec::new();
    for (n, (name, _, _, _)) in cases.iter().enumerate() {
        let account = account_for(&s, 100 + n as u32);
        s.create_policy(
            name,
            json!({"accountId": account, "credentialsRef": {"name": name}, "driftCheckInterval": "1h"}),
        )
        .await;
        accounts.push(account);
    }
    // A reference to a Secret that does not exist, by an odd but schema-valid
    // (DNS-1123 subdomain) name.
    let missing_account = account_for(&s, 150);
    s.create_policy(
        "odd-ref",
        json!({"accountId": missing_account, "credentialsRef": {"name": "no-such.secret-0"}}),
    )
    .await;

    for ((name, _, reason, message), account) in cases.iter().zip(&accounts) {
        let p = s.wait_ready_reason(name, reason).await;
        match message {
            Some(message) => {
                assert_eq!(ready_message(&p), *message, "{name}");
                assert!(
                    calls_for(&s, account).is_empty(),
                    "{name}: Cloudflare was called"
                );
            }
            None => assert_eq!(calls_for(&s, account), ["GET", "PUT"], "{name}"),
        }
    }
    let p = s.wait_ready_reason("odd-ref", "SecretNotFound").await;
    assert_eq!(
        ready_message(&p),
        format!(
            "Secret no-such.secret-0 not found in namespace {}; create it with key apiToken (or apiKey and email)",
            s.namespace
        )
    );
    assert!(calls_for(&s, &missing_account).is_empty());
    // The trimmed credentials were recognised as the configured ones.
    let credentials = s.credentials_used();
    assert!(
        credentials.contains(&"scenario".to_owned()) && credentials.contains(&"legacy".to_owned())
    );
    assert!(
        !credentials.iter().any(|c| c == "unknown"),
        "{credentials:?}"
    );
    s.assert_log_has_no_secret();
}

// ---- 4. Cloudflare answers of every odd shape -------------------------------------

/// What the canned server answers.
#[derive(Clone)]
enum Reply {
    /// These exact bytes (a whole HTTP response), then close.
    Bytes(Vec<u8>),
    /// These bytes (status line and headers), then body bytes until the client leaves.
    Endless { head: Vec<u8>, chunked: bool },
    /// Read the request, never answer.
    Hang,
}

/// One request the canned server read.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    head: String,
}

/// A raw HTTP/1.1 server on loopback that answers each request from a route function.
struct Canned {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    written: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Canned {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Canned {
    async fn start(route: impl Fn(&str, &str) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let written = Arc::new(AtomicUsize::new(0));
        let route = Arc::new(route);
        let task = {
            let (seen, written) = (seen.clone(), written.clone());
            tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    let (seen, written, route) = (seen.clone(), written.clone(), route.clone());
                    tokio::spawn(async move {
                        serve(socket, &*route, &seen, &written).await;
                    });
                }
            })
        };
        Self {
            addr,
            seen,
            written,
            task,
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}/client/v4", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    fn count(&self, method: &str) -> usize {
        self.seen().iter().filter(|r| r.method == method).count()
    }
}

async fn serve(
    mut socket: TcpStream,
    route: &(dyn Fn(&str, &str) -> Reply + Send + Sync),
    seen: &Mutex<Vec<Seen>>,
    written: &AtomicUsize,
) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
        if buffer.len() > 64 * 1024 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or_default().to_owned();
    let path = words.next().unwrap_or_default().to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
    let reply = route(&method, &path);
    seen.lock().expect("lock").push(Seen { method, head });
    match reply {
        Reply::Bytes(bytes) => {
            if socket.write_all(&bytes).await.is_ok() {
                written.fetch_add(bytes.len(), Ordering::Relaxed);
            }
            let _ = socket.shutdown().await;
        }
        Reply::Endless { head, chunked } => {
            if socket.write_all(&head).await.is_err() {
                return;
            }
            let mut body = b"{\"success\":true,\"result\":{\"padding\":\"".to_vec();
            body.resize(64 * 1024, b'a');
            let piece = if chunked {
                let mut framed = format!("{:x}\r\n", body.len()).into_bytes();
                framed.extend_from_slice(&body);
                framed.extend_from_slice(b"\r\n");
                framed
            } else {
                body
            };
            // Stop at 256 MiB whatever happens: the test must stay bounded.
            while written.load(Ordering::Relaxed) < 256 << 20 {
                if socket.write_all(&piece).await.is_err() {
                    return;
                }
                written.fetch_add(piece.len(), Ordering::Relaxed);
            }
        }
        Reply::Hang => std::future::pending::<()>().await,
    }
}

fn http(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn json_200(body: &str) -> Reply {
    Reply::Bytes(http(
        "200 OK",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    ))
}

fn ok_result(result: &str) -> Reply {
    json_200(&format!(
        r#"{{"success":true,"errors":[],"messages":[],"result":{result}}}"#
    ))
}

const HTML: &str = "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1>cloudflare</body></html>";
const GOOD: &str = r#"{"key_rotation_interval_days":30,"days_until_next_rotation":12,"last_key_rotation_at":"2026-11-14T09:12:44.5Z"}"#;
const HTML_DETAIL: &str = "body is HTML, not JSON (a proxy or error page)";

fn malformed(status: u16, detail: &str) -> Result<AccountKeyConfig, CloudflareError> {
    Err(CloudflareError::Malformed {
        status,
        detail: detail.to_owned(),
    })
}

fn client_for(base_url: &str, request_timeout: Duration) -> CloudflareClient {
    CloudflareClient::new(
        &ClientSettings {
            base_url: base_url.to_owned(),
            connect_timeout: Duration::from_secs(2),
            request_timeout,
            retry: RetryPolicy {
                max_retries: 3,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(40),
            },
        },
        Arc::new(BudgetRegistry::new(1000, Duration::from_secs(1), 100)),
    )
    .expect("client")
}

/// Which call a case makes.
#[derive(Clone, Copy, Debug)]
enum Call {
    Get,
    Rotate,
}

type Check = Box<dyn Fn(&Result<AccountKeyConfig, CloudflareError>) -> bool + Send>;

enum Want {
    Exact(Result<AccountKeyConfig, CloudflareError>),
    Matches(&'static str, Check),
}

#[tokio::test]
async fn odd_answers_on_the_wire_end_in_one_exact_result() {
    // Bodies of every odd shape are `parse_response` cases (src/cloudflare/envelope_cases.rs);
    // these need the client: retries, a POST never retried, body limits, broken HTTP.
    let server_502_html = http(
        "502 Bad Gateway",
        &[("Content-Type", "text/html")],
        HTML.as_bytes(),
    );
    // name, call, reply, expected result, expected number of requests
    let cases: Vec<(&str, Call, Reply, Want, usize)> = vec![
        (
            "html 502 is retried, then a server error",
            Call::Get,
            Reply::Bytes(server_502_html.clone()),
            Want::Exact(Err(CloudflareError::Server { status: 502, code: None, message: HTML_DETAIL.into(), attempts: 4 })),
            4,
        ),
        (
            "html 502 on rotate is never retried",
            Call::Rotate,
            Reply::Bytes(server_502_html),
            Want::Exact(Err(CloudflareError::Server { status: 502, code: None, message: HTML_DETAIL.into(), attempts: 1 })),
            1,
        ),
        (
            "a body declared as 64 MiB is not read whole",
            Call::Get,
            Reply::Endless { head: b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 67108864\r\n\r\n".to_vec(), chunked: false },
            Want::Exact(malformed(200, "body larger than 1048576 bytes, not read")),
            1,
        ),
        (
            "an endless chunked body is not read whole",
            Call::Get,
            Reply::Endless { head: b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(), chunked: true },
            Want::Exact(malformed(200, "body larger than 1048576 bytes, not read")),
            1,
        ),
        (
            "garbage instead of HTTP is a transport error, retried",
            Call::Get,
            Reply::Bytes(b"HELLO THERE\r\n\r\n".to_vec()),
            Want::Matches("Transport after 4 attempts", Box::new(|r| matches!(r, Err(CloudflareError::Transport { attempts: 4, .. })))),
            4,
        ),
        (
            "HTTP/1.0 without a length is read to the end",
            Call::Get,
            Reply::Bytes(format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{{\"success\":true,\"result\":{GOOD}}}").into_bytes()),
            Want::Exact(Ok(AccountKeyConfig {
                key_rotation_interval_days: Some(30),
                days_until_next_rotation: Some(12.0),
                last_key_rotation_at: Some("2026-11-14T09:12:44.5Z".parse().expect("timestamp")),
                served_at: None,
            })),
            1,
        ),
    ];
    for (name, call, reply, want, requests) in cases {
        let server = Canned::start(move |_, _| reply.clone()).await;
        let client = client_for(&server.base_url(), Duration::from_secs(5));
        let credentials = Credentials::api_token(TOKEN);
        let started = Instant::now();
        let result = match call {
            Call::Get => client.get_config(&credentials, ACCOUNT).await,
            Call::Rotate => client.rotate(&credentials, ACCOUNT).await,
        };
        match want {
            Want::Exact(expected) => assert_eq!(result, expected, "{name}"),
            Want::Matches(what, check) => {
                assert!(check(&result), "{name}: want {what}, got {result:?}")
            }
        }
        assert_eq!(server.seen().len(), requests, "{name}: requests made");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name} took {:?}",
            started.elapsed()
        );
        if name.contains("not read whole") {
            let written = server.written.load(Ordering::Relaxed);
            assert!(
                written < 16 << 20,
                "{name}: the server got {written} bytes out"
            );
        }
        if let Err(err) = &result {
            let printed = format!("{err} {err:?}");
            assert!(
                !printed.contains(TOKEN),
                "{name}: the token is in the error"
            );
        }
    }
}

#[tokio::test]
async fn a_silent_server_times_out_and_a_hanging_rotate_is_not_retried() {
    let server = Canned::start(|_, _| Reply::Hang).await;
    let client = client_for(&server.base_url(), Duration::from_millis(500));
    let credentials = Credentials::api_token(TOKEN);
    let started = Instant::now();
    let get = client.get_config(&credentials, ACCOUNT).await;
    assert!(
        matches!(
            get,
            Err(CloudflareError::Transport {
                kind: TransportKind::Timeout,
                attempts: 4,
                ..
            })
        ),
        "{get:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let rotate = client.rotate(&credentials, ACCOUNT).await;
    assert!(
        matches!(
            rotate,
            Err(CloudflareError::Transport {
                kind: TransportKind::Timeout,
                attempts: 1,
                ..
            })
        ),
        "{rotate:?}"
    );
    assert_eq!(server.count("GET"), 4);
    assert_eq!(
        server.count("POST"),
        1,
        "a POST that may have landed is never repeated blindly"
    );
}

/// A redirect from "Cloudflare" to another origin must not carry the
/// credentials there. reqwest drops `Authorization` on a cross-origin redirect
/// but not the global key's custom headers.
#[tokio::test]
async fn a_redirect_never_carries_the_credentials_to_another_origin() {
    let elsewhere = Canned::start(|_, _| ok_result(GOOD)).await;
    let target = format!("{}/accounts/{ACCOUNT}/access/keys", elsewhere.base_url());
    let cloudflare = Canned::start(move |_, _| {
        Reply::Bytes(http(
            "307 Temporary Redirect",
            &[("Location", target.as_str())],
            b"",
        ))
    })
    .await;
    let client = client_for(&cloudflare.base_url(), Duration::from_secs(2));
    for credentials in [
        Credentials::api_token(TOKEN),
        Credentials::global_key(support::API_KEY, support::EMAIL),
    ] {
        let _ = client.get_config(&credentials, ACCOUNT).await;
    }
    let leaked: Vec<&str> = elsewhere
        .seen()
        .iter()
        .flat_map(|seen| {
            [
                (TOKEN, "the token"),
                (support::API_KEY, "the global key"),
                (support::EMAIL, "the email"),
            ]
            .into_iter()
            .filter(|(secret, _)| seen.head.contains(secret))
            .map(|(_, what)| what)
            .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "a redirect carried {leaked:?} to another origin ({} requests arrived there)",
        elsewhere.seen().len()
    );
}

/// The operator against a server of odd answers, one account per answer and
/// one token per policy (so one policy's 429 does not block the others): each
/// policy ends in its exact Ready reason and message, and the process lives on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_survives_odd_answers_with_exact_reasons() {
    let mut s = Scenario::new("hostile-cf").await;
    let accounts: Vec<String> = (0..4).map(|n| format!("{:032x}", 0xc000_u64 + n)).collect();
    let routes = accounts.clone();
    let server = Canned::start(move |method, path| {
        let which = routes.iter().position(|a| path.contains(a.as_str()));
        match (which, method) {
            (Some(0), _) => Reply::Bytes(http("200 OK", &[("Content-Type", "text/html")], HTML.as_bytes())),
            (Some(1), _) => Reply::Bytes(http(
                "429 Too Many Requests",
                &[("Retry-After", "18446744073709551615")],
                b"",
            )),
            // Yesterday's rotation in a format nobody can read; a POST would succeed.
            (Some(2), "GET") => ok_result(r#"{"key_rotation_interval_days":30,"days_until_next_rotation":29,"last_key_rotation_at":"yesterday"}"#),
            (Some(2), _) => ok_result(GOOD),
            (Some(3), _) => Reply::Endless {
                head: b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n".to_vec(),
                chunked: false,
            },
            _ => Reply::Bytes(http("404 Not Found", &[], b"")),
        }
    })
    .await;
    for n in 0..4 {
        s.apply_secret(
            &format!("token-{n}"),
            &[("apiToken", &format!("{TOKEN}-{n}"))],
        )
        .await;
    }
    let url = server.base_url();
    s.start_operator_with(
        &["--cloudflare-api-url", &url, "--request-timeout", "2s"],
        &[],
    );
    let expected = [
        (
            "ApiError",
            "reading the account: malformed Cloudflare response (HTTP 200): body is HTML, not JSON (a proxy or error page)",
        ),
        (
            "RateLimited",
            "reading the account: Cloudflare rate limit reached; retrying after 3600 s",
        ),
        (
            "ApiError",
            "reading the account: malformed Cloudflare response (HTTP 200): `last_key_rotation_at` is not a timestamp; without it a rotation cannot be verified",
        ),
        (
            "ApiError",
            "reading the account: malformed Cloudflare response (HTTP 200): body larger than 1048576 bytes, not read",
        ),
    ];
    for (n, account) in accounts.iter().enumerate() {
        s.create_policy(
            &format!("p{n}"),
            json!({"accountId": account, "credentialsRef": {"name": format!("token-{n}")}}),
        )
        .await;
    }
    // A request that the cooldown would refuse, were yesterday's rotation readable.
    s.annotate("p2", json!({ROTATE: "r1"})).await;
    for (n, (reason, message)) in expected.iter().enumerate() {
        let p = s.wait_ready_reason(&format!("p{n}"), reason).await;
        assert_eq!(ready_message(&p), *message, "p{n}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        server.count("POST"),
        0,
        "rotated without a readable last rotation"
    );
    assert_eq!(last_handled_request(&s.policy("p2").await), None);
    let written = server.written.load(Ordering::Relaxed);
    assert!(written < 64 << 20, "{written} bytes sent to the operator");
    let operator = s.operator.as_mut().expect("operator");
    assert_eq!(
        operator.wait_exit(Duration::ZERO).await,
        None,
        "the operator died:\n{}",
        operator.log()
    );
    assert!(!operator.log().contains("panicked"), "{}", operator.log());
}

// ---- 5. Rotate annotations ------------------------------------------------------

/// Name, annotations, rotationCooldown, expected handled value, outcome, POSTs.
type AnnotationCase<'a> = (
    &'a str,
    Value,
    &'a str,
    Option<&'a str>,
    Option<RotateOutcome>,
    usize,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_rotate_annotations_are_each_handled_once_or_not_at_all() {
    let mut s = Scenario::new("hostile-ann").await;
    s.apply_token_secret().await;
    s.start_operator();
    let ten_kb = "k".repeat(10 * 1024);
    let longest = "l".repeat(253);
    let one_over = "o".repeat(254);
    // What status records for an over-long value: a short stand-in (the value
    // itself would not fit the status field's 253-character limit).
    let recorded = |value: &str| {
        RotateRequest {
            value: value.to_owned(),
            force: false,
        }
        .recorded()
        .into_owned()
    };
    let (ten_kb_recorded, one_over_recorded) = (recorded(&ten_kb), recorded(&one_over));
    let non_ascii = "ротация-🔑-2026-11-26T10:00:00Z";
    let cases: Vec<AnnotationCase> = vec![
        ("empty", json!({ROTATE: ""}), "0s", None, None, 0),
        (
            "ten-kb",
            json!({ROTATE: ten_kb}),
            "0s",
            Some(&ten_kb_recorded),
            Some(RotateOutcome::Failed),
            0,
        ),
        (
            "longest",
            json!({ROTATE: longest}),
            "0s",
            Some(&longest),
            Some(RotateOutcome::Rotated),
            1,
        ),
        (
            "one-over",
            json!({ROTATE: one_over, FORCE: one_over}),
            "0s",
            Some(&one_over_recorded),
            Some(RotateOutcome::Failed),
            0,
        ),
        (
            "non-ascii",
            json!({ROTATE: non_ascii}),
            "0s",
            Some(non_ascii),
            Some(RotateOutcome::Rotated),
            1,
        ),
        (
            "whitespace",
            json!({ROTATE: " "}),
            "0s",
            Some(" "),
            Some(RotateOutcome::Rotated),
            1,
        ),
        (
            "force-yes-is-not-true",
            json!({ROTATE: "r1", FORCE: "yes"}),
            "168h",
            Some("r1"),
            Some(RotateOutcome::RefusedCooldown),
            0,
        ),
        (
            "force-true-is-no-token",
            json!({ROTATE: "r1", FORCE: "TRUE"}),
            "168h",
            Some("r1"),
            Some(RotateOutcome::RefusedCooldown),
            0,
        ),
        (
            "force-token",
            json!({ROTATE: "r1", FORCE: "r1"}),
            "168h",
            Some("r1"),
            Some(RotateOutcome::Rotated),
            1,
        ),
    ];
    let mut accounts = Vec::new();
    for (n, (name, _, cooldown, _, _, _)) in cases.iter().enumerate() {
        let account = account_for(&s, 200 + n as u32);
        s.create_policy(
            name,
            json!({"accountId": account, "rotationCooldown": cooldown}),
        )
        .await;
        accounts.push(account);
    }
    for (name, ..) in &cases {
        s.wait_for(name, "Ready", is_ready).await;
    }
    for (name, annotations, ..) in &cases {
        s.annotate(name, annotations.clone()).await;
    }
    for (name, _, _, value, outcome, _) in &cases {
        let p = match value {
            Some(value) => {
                s.wait_for(name, "request handled", |p| {
                    last_handled_request(p) == Some(*value)
                })
                .await
            }
            None => {
                tokio::time::sleep(Duration::from_secs(2)).await;
                s.policy(name).await
            }
        };
        assert_eq!(last_handled_request(&p), *value, "{name}");
        assert_eq!(
            p.status.as_ref().and_then(|st| st.last_rotate_outcome),
            *outcome,
            "{name}"
        );
        assert!(
            p.status
                .as_ref()
                .and_then(|st| st.pending_rotation.as_ref())
                .is_none(),
            "{name}"
        );
    }
    // Once: after more drift checks, still one POST per handled request.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for ((name, _, _, _, _, posts), account) in cases.iter().zip(&accounts) {
        let made = calls_for(&s, account)
            .iter()
            .filter(|m| *m == "POST")
            .count();
        assert_eq!(made, *posts, "{name}: POSTs");
    }
    // An over-long value is refused as invalid, with an event that says why
    // (and does not repeat the value).
    for name in ["ten-kb", "one-over"] {
        let events = s.events(name).await;
        let refused = events
            .iter()
            .find(|(reason, _)| reason == "RotationRefused")
            .unwrap_or_else(|| panic!("{name}: a RotationRefused event in {events:?}"));
        assert!(
            refused.1.contains("longer than 253 characters"),
            "{refused:?}"
        );
        assert!(
            !refused
                .1
                .contains("oooooooooooooooooooooooooooooooooooooooo"),
            "{refused:?}"
        );
        assert!(refused.1.len() <= 1000, "{} bytes", refused.1.len());
    }
    // Over the API server's 256 KiB limit for all annotations: refused, nothing changes.
    let refused = s
        .policies()
        .patch(
            "empty",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {ROTATE: "x".repeat(300 * 1024)}}})),
        )
        .await
        .map(|_| ())
        .map_err(api_message)
        .expect_err("over 256 KiB");
    assert!(
        refused.contains("Too long") && refused.contains("262144"),
        "{refused}"
    );
    let operator = s.operator.as_mut().expect("operator");
    assert_eq!(operator.wait_exit(Duration::ZERO).await, None);
    s.assert_log_has_no_secret();
}

/// A tenant cannot rotate again and again with `rotationCooldown: 0s` (two
/// rotations within the 7-day key overlap invalidate tokens in use): the
/// operator holds every policy to its minimum (`--min-rotation-cooldown`,
/// 168h by default) and its Ready message says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_cooldown_is_held_to_the_operators_minimum() {
    let mut s = Scenario::new("hostile-cooldown").await;
    s.apply_token_secret().await;
    s.start_operator_with(&["--min-rotation-cooldown", "168h"], &[]);
    s.create_policy("p", json!({"rotationCooldown": "0s"}))
        .await;
    let p = s.wait_for("p", "Ready", is_ready).await;
    let message = ready_message(&p);
    assert!(
        message.contains("rotationCooldown 0s is below the operator's minimum")
            && message.contains("held to 168h"),
        "{message}"
    );
    // A forced request rotates; the next plain one is inside the minimum.
    s.annotate("p", json!({ROTATE: "r1", FORCE: "r1"})).await;
    s.wait_for("p", "r1 handled", |p| last_handled_request(p) == Some("r1"))
        .await;
    s.annotate("p", json!({ROTATE: "r2"})).await;
    let p = s
        .wait_for("p", "r2 handled", |p| last_handled_request(p) == Some("r2"))
        .await;
    assert_eq!(
        p.status.as_ref().and_then(|st| st.last_rotate_outcome),
        Some(RotateOutcome::RefusedCooldown)
    );
    assert_eq!(s.calls("POST").len(), 1);
    // The event follows the status write.
    let refused = |events: &[(String, String)]| {
        events
            .iter()
            .any(|(reason, note)| reason == "RotationRefused" && note.contains("cooldown of 168h"))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut events = s.events("p").await;
    while !refused(&events) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        events = s.events("p").await;
    }
    assert!(refused(&events), "{events:?}");
}
