//! The rule for the Cloudflare API URL: the token travels in every request's
//! headers, so it goes over `https://` only, except to this host's own
//! loopback (the simulator, a local proxy) or when the operator explicitly
//! allows clear text (`--allow-insecure-api-url`).

use std::net::IpAddr;

use url::Url;

/// Why an API URL is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiUrlError {
    /// Not a URL at all.
    #[error("--cloudflare-api-url {url:?} is not a URL: {reason}")]
    Unparseable {
        /// The value given.
        url: String,
        /// The parser's reason.
        reason: String,
    },
    /// Neither http nor https.
    #[error("--cloudflare-api-url {url:?} must be https:// (got scheme {scheme:?})")]
    Scheme {
        /// The value given.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// `http://` to a host other than loopback.
    #[error(
        "--cloudflare-api-url {url:?} would send the API token in clear text: use https://, a loopback address, or --allow-insecure-api-url"
    )]
    Insecure {
        /// The value given.
        url: String,
    },
}

/// Checks `url` against the rule.
pub fn check_api_url(url: &str, allow_insecure: bool) -> Result<(), ApiUrlError> {
    let parsed = Url::parse(url).map_err(|e| ApiUrlError::Unparseable {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure || is_loopback(&parsed) => Ok(()),
        "http" => Err(ApiUrlError::Insecure {
            url: url.to_owned(),
        }),
        other => Err(ApiUrlError::Scheme {
            url: url.to_owned(),
            scheme: other.to_owned(),
        }),
    }
}

/// 127.0.0.0/8, ::1 (also as IPv4-mapped) and `localhost`.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).to_canonical().is_loopback(),
        Some(url::Host::Domain(name)) => {
            name.trim_end_matches('.').eq_ignore_ascii_case("localhost")
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_is_always_allowed() {
        assert_eq!(
            check_api_url("https://api.cloudflare.com/client/v4", false),
            Ok(())
        );
        assert_eq!(check_api_url("https://10.0.0.1:8443/", false), Ok(()));
    }

    #[test]
    fn http_is_allowed_to_loopback_only() {
        for url in [
            "http://127.0.0.1:8081/client/v4",
            "http://127.1.2.3/",
            "http://[::1]:9000/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost:8081/",
            "http://LOCALHOST./",
        ] {
            assert_eq!(check_api_url(url, false), Ok(()), "{url}");
        }
        for url in [
            "http://example.invalid/client/v4",
            "http://10.0.0.5:8081/client/v4",
            "http://128.0.0.1/",
            "http://[::2]/",
            "http://localhost.example.com/",
            "http://127.0.0.1.nip.io/",
        ] {
            assert!(
                matches!(check_api_url(url, false), Err(ApiUrlError::Insecure { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn http_anywhere_needs_the_explicit_flag() {
        assert_eq!(
            check_api_url("http://10.0.0.5:8081/client/v4", true),
            Ok(())
        );
    }

    #[test]
    fn other_schemes_and_non_urls_are_refused_even_with_the_flag() {
        assert!(matches!(
            check_api_url("ftp://example.com/", true),
            Err(ApiUrlError::Scheme { .. })
        ));
        assert!(matches!(
            check_api_url("api.cloudflare.com", true),
            Err(ApiUrlError::Unparseable { .. })
        ));
    }
}
