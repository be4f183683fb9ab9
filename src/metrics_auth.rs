//! Who may read `/metrics`: the kubebuilder / controller-runtime pattern. The
//! caller's bearer token is checked with a TokenReview, and the user it names
//! with a SubjectAccessReview of `get` on the non-resource URL `/metrics`, so
//! the reader needs a role such as the chart's `keyrotor-metrics-reader`.
//! Decisions are cached briefly (controller-runtime caches them too), keyed by
//! a SHA-256 of the token, never the token itself.

use std::{
    num::NonZeroUsize,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use k8s_openapi::api::{
    authentication::v1::{TokenReview, TokenReviewSpec, UserInfo},
    authorization::v1::{NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
};
use kube::{Api, api::PostParams};
use lru::LruCache;
use tokio::{sync::Semaphore, time::Instant};

/// How long an allowed caller is remembered: revoking the reader role takes
/// effect within this time (controller-runtime: 1 min for the token review).
pub const ALLOW_TTL: Duration = Duration::from_secs(60);
/// How long a refused token or user is remembered (controller-runtime: 30 s
/// for a denied access review).
pub const DENY_TTL: Duration = Duration::from_secs(30);
/// Distinct tokens remembered; a scraper uses one, so this only bounds memory
/// when many tokens are tried.
pub const CACHE_ENTRIES: usize = 1024;
/// Reviews sent to the API server at the same time: a flood of made-up tokens
/// cannot turn into a flood of API requests.
pub const MAX_CONCURRENT_REVIEWS: usize = 4;
/// Timeout of one TokenReview or SubjectAccessReview (controller-runtime: 10 s).
pub const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// What a caller may do with `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The token is valid and its user may `get` the path.
    Allowed,
    /// No token, or the API server does not accept it (HTTP 401).
    Unauthenticated,
    /// A valid token whose user may not `get` the path (HTTP 403).
    Forbidden,
}

/// Why no decision could be made (HTTP 500; not cached).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The TokenReview failed (API server unreachable, or the operator lacks `create` on it).
    #[error("TokenReview failed: {0}")]
    TokenReview(#[source] kube::Error),
    /// The SubjectAccessReview failed.
    #[error("SubjectAccessReview failed: {0}")]
    AccessReview(#[source] kube::Error),
    /// The review did not answer in time.
    #[error("the review did not answer within {0:?}")]
    Timeout(Duration),
    /// The answer had no status.
    #[error("the {0} answer had no status")]
    NoStatus(&'static str),
}

/// The reviewer, with its cache.
pub struct MetricsAuthorizer {
    client: kube::Client,
    cache: Mutex<LruCache<[u8; 32], (Decision, Instant)>>,
    reviews: Semaphore,
}

impl MetricsAuthorizer {
    /// Reviews with `client` (the operator's own credentials).
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            cache: Mutex::new(LruCache::new(
                NonZeroUsize::new(CACHE_ENTRIES).unwrap_or(NonZeroUsize::MIN),
            )),
            reviews: Semaphore::new(MAX_CONCURRENT_REVIEWS),
        }
    }

    /// The decision for a request to `path` with this `Authorization` header value.
    pub async fn decide(
        &self,
        authorization: Option<&str>,
        path: &str,
    ) -> Result<Decision, ReviewError> {
        let Some(token) = bearer_token(authorization) else {
            return Ok(Decision::Unauthenticated);
        };
        let key = cache_key(token, path);
        if let Some(decision) = self.cached(&key) {
            return Ok(decision);
        }
        // Held while reviewing; a closed semaphore cannot happen (never closed).
        let _permit = self.reviews.acquire().await.ok();
        // Another request may have filled the entry while this one waited.
        if let Some(decision) = self.cached(&key) {
            return Ok(decision);
        }
        let decision = tokio::time::timeout(REVIEW_TIMEOUT, self.review(token, path))
            .await
            .map_err(|_| ReviewError::Timeout(REVIEW_TIMEOUT))??;
        let ttl = if decision == Decision::Allowed {
            ALLOW_TTL
        } else {
            DENY_TTL
        };
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .put(key, (decision, Instant::now() + ttl));
        Ok(decision)
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Decision> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        match cache.get(key) {
            Some((decision, until)) if *until > Instant::now() => Some(*decision),
            Some(_) => {
                cache.pop(key);
                None
            }
            None => None,
        }
    }

    async fn review(&self, token: &str, path: &str) -> Result<Decision, ReviewError> {
        let Some(user) = self.authenticate(token).await? else {
            return Ok(Decision::Unauthenticated);
        };
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(path.to_owned()),
                    verb: Some("get".to_owned()),
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let answer = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(ReviewError::AccessReview)?;
        let status = answer
            .status
            .ok_or(ReviewError::NoStatus("SubjectAccessReview"))?;
        Ok(if status.allowed && status.denied != Some(true) {
            Decision::Allowed
        } else {
            Decision::Forbidden
        })
    }

    /// The user the token belongs to, or `None` when the API server does not accept it.
    async fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, ReviewError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                // The API server's own audiences, as controller-runtime asks.
                audiences: None,
            },
            ..TokenReview::default()
        };
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(ReviewError::TokenReview)?;
        let status = answer.status.ok_or(ReviewError::NoStatus("TokenReview"))?;
        Ok(match (status.authenticated, status.user) {
            (Some(true), Some(user)) => Some(user),
            _ => None,
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer_token(authorization: Option<&str>) -> Option<&str> {
    let value = authorization?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// SHA-256 of path and token: the cache never holds a token.
fn cache_key(token: &str, path: &str) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(path.as_bytes());
    context.update(&[0]);
    context.update(token.as_bytes());
    let digest = context.finish();
    let mut key = [0; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;

    use super::*;

    #[test]
    fn bearer_token_is_read_only_from_a_bearer_header() {
        assert_eq!(bearer_token(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(Some("Basic abc")), None);
        assert_eq!(bearer_token(Some("Bearer ")), None);
        assert_eq!(bearer_token(Some("abc")), None);
        assert_eq!(bearer_token(None), None);
    }

    /// A fake API server answering reviews: `alice-token` is alice, a reader;
    /// `bob-token` is bob, not a reader; anything else is unknown. Counts the
    /// reviews it answers.
    fn api(reviews: Arc<AtomicUsize>) -> kube::Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                reviews.fetch_add(1, Ordering::SeqCst);
                let path = request.uri().path().to_owned();
                let body = request.into_body().collect_bytes().await.expect("body");
                let sent: serde_json::Value = serde_json::from_slice(&body).expect("json");
                let answer = if path.ends_with("/tokenreviews") {
                    let user = match sent["spec"]["token"].as_str() {
                        Some("alice-token") => Some("alice"),
                        Some("bob-token") => Some("bob"),
                        _ => None,
                    };
                    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                        "spec": sent["spec"],
                        "status": {"authenticated": user.is_some(), "user": {"username": user}}})
                } else {
                    assert_eq!(sent["spec"]["nonResourceAttributes"]["path"], "/metrics");
                    assert_eq!(sent["spec"]["nonResourceAttributes"]["verb"], "get");
                    let allowed = sent["spec"]["user"] == "alice";
                    json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                        "spec": sent["spec"], "status": {"allowed": allowed}})
                };
                respond.send_response(
                    Response::builder()
                        .status(201)
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::to_vec(&answer).expect("json")))
                        .expect("response"),
                );
            }
        });
        kube::Client::new(service, "default")
    }

    #[tokio::test(start_paused = true)]
    async fn decisions_are_reviewed_once_then_cached_until_their_time_is_up() {
        let reviews = Arc::new(AtomicUsize::new(0));
        let auth = MetricsAuthorizer::new(api(reviews.clone()));
        let count = || reviews.load(Ordering::SeqCst);
        let decide = |token: &'static str| auth.decide(Some(token), "/metrics");

        assert_eq!(
            auth.decide(None, "/metrics").await.ok(),
            Some(Decision::Unauthenticated)
        );
        assert_eq!(count(), 0, "no token, no review");
        assert_eq!(
            decide("Bearer alice-token").await.ok(),
            Some(Decision::Allowed)
        );
        assert_eq!(count(), 2, "a TokenReview and a SubjectAccessReview");
        assert_eq!(
            decide("Bearer bob-token").await.ok(),
            Some(Decision::Forbidden)
        );
        assert_eq!(
            decide("Bearer made-up").await.ok(),
            Some(Decision::Unauthenticated)
        );
        assert_eq!(count(), 5, "the unknown token needs no access review");
        for _ in 0..3 {
            assert_eq!(
                decide("Bearer alice-token").await.ok(),
                Some(Decision::Allowed)
            );
            assert_eq!(
                decide("Bearer bob-token").await.ok(),
                Some(Decision::Forbidden)
            );
        }
        assert_eq!(count(), 5, "cached");
        // The refusals expire first, then the allowance.
        tokio::time::advance(DENY_TTL).await;
        assert_eq!(
            decide("Bearer bob-token").await.ok(),
            Some(Decision::Forbidden)
        );
        assert_eq!(
            decide("Bearer alice-token").await.ok(),
            Some(Decision::Allowed)
        );
        assert_eq!(count(), 7, "bob reviewed again, alice still cached");
        tokio::time::advance(ALLOW_TTL - DENY_TTL).await;
        assert_eq!(
            decide("Bearer alice-token").await.ok(),
            Some(Decision::Allowed)
        );
        assert_eq!(count(), 9, "alice reviewed again");
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_holds_at_most_its_size_in_tokens() {
        let reviews = Arc::new(AtomicUsize::new(0));
        let auth = MetricsAuthorizer::new(api(reviews));
        for n in 0..CACHE_ENTRIES + 10 {
            let header = format!("Bearer made-up-{n}");
            assert_eq!(
                auth.decide(Some(&header), "/metrics").await.ok(),
                Some(Decision::Unauthenticated)
            );
        }
        assert_eq!(
            auth.cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len(),
            CACHE_ENTRIES
        );
    }

    #[test]
    fn cache_keys_differ_per_token_and_path_and_hold_no_token() {
        let a = cache_key("token-a", "/metrics");
        assert_ne!(a, cache_key("token-b", "/metrics"));
        assert_ne!(a, cache_key("token-a", "/other"));
        assert_eq!(a, cache_key("token-a", "/metrics"));
        assert!(!a.windows(7).any(|w| w == b"token-a"));
    }
}
