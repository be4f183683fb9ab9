//! Reading Cloudflare credentials out of a Secret's data (pure): exactly one
//! kind of credential, non-empty, UTF-8, no inner whitespace, bounded size.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;

use crate::cloudflare::Credentials;

/// Data key of an API token.
pub const KEY_API_TOKEN: &str = "apiToken";
/// Data key of a legacy global API key.
pub const KEY_API_KEY: &str = "apiKey";
/// Data key of the email that goes with the global key.
pub const KEY_EMAIL: &str = "email";
/// Longer values are certainly not Cloudflare credentials.
const MAX_VALUE_BYTES: usize = 4096;

/// What is wrong with a Secret's credentials. Messages name keys, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Both `apiToken` and `apiKey`/`email`.
    #[error("Secret {0} holds both apiToken and apiKey/email; keep exactly one kind")]
    BothKinds(String),
    /// None of the known keys.
    #[error("Secret {secret} has no apiToken, nor apiKey and email (keys present: {present})")]
    NoCredentials {
        /// Secret name.
        secret: String,
        /// Key names found, comma-separated.
        present: String,
    },
    /// `apiKey` without `email` or the reverse.
    #[error(
        "Secret {secret} has {has} but not {missing}; a global key needs both apiKey and email"
    )]
    IncompleteGlobalKey {
        /// Secret name.
        secret: String,
        /// The key that is there.
        has: &'static str,
        /// The key that is missing.
        missing: &'static str,
    },
    /// A value is empty (or only whitespace).
    #[error("Secret {secret} key {key} is empty")]
    Empty {
        /// Secret name.
        secret: String,
        /// Data key.
        key: &'static str,
    },
    /// A value is not UTF-8 text.
    #[error("Secret {secret} key {key} is not UTF-8 text")]
    NotUtf8 {
        /// Secret name.
        secret: String,
        /// Data key.
        key: &'static str,
    },
    /// A value has whitespace or control characters inside it.
    #[error("Secret {secret} key {key} contains whitespace or control characters")]
    BadCharacters {
        /// Secret name.
        secret: String,
        /// Data key.
        key: &'static str,
    },
    /// A value is far too long to be a credential.
    #[error("Secret {secret} key {key} is longer than {MAX_VALUE_BYTES} bytes")]
    TooLarge {
        /// Secret name.
        secret: String,
        /// Data key.
        key: &'static str,
    },
}

/// Reads the credentials from a Secret's `data`. Surrounding whitespace (the
/// newline `echo` adds) is trimmed; anything else odd is an error.
pub fn credentials_from_secret(
    secret_name: &str,
    data: &BTreeMap<String, ByteString>,
) -> Result<Credentials, SecretError> {
    let has = |key: &str| data.contains_key(key);
    match (has(KEY_API_TOKEN), has(KEY_API_KEY), has(KEY_EMAIL)) {
        (true, false, false) => Ok(Credentials::api_token(value(
            secret_name,
            data,
            KEY_API_TOKEN,
        )?)),
        (false, true, true) => Ok(Credentials::global_key(
            value(secret_name, data, KEY_API_KEY)?,
            value(secret_name, data, KEY_EMAIL)?,
        )),
        (true, _, _) => Err(SecretError::BothKinds(secret_name.to_owned())),
        (false, true, false) => Err(SecretError::IncompleteGlobalKey {
            secret: secret_name.to_owned(),
            has: KEY_API_KEY,
            missing: KEY_EMAIL,
        }),
        (false, false, true) => Err(SecretError::IncompleteGlobalKey {
            secret: secret_name.to_owned(),
            has: KEY_EMAIL,
            missing: KEY_API_KEY,
        }),
        (false, false, false) => Err(SecretError::NoCredentials {
            secret: secret_name.to_owned(),
            present: if data.is_empty() {
                "none".to_owned()
            } else {
                data.keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }),
    }
}

fn value(
    secret: &str,
    data: &BTreeMap<String, ByteString>,
    key: &'static str,
) -> Result<String, SecretError> {
    let err = |make: fn(String, &'static str) -> SecretError| make(secret.to_owned(), key);
    let bytes = data.get(key).map(|b| b.0.as_slice()).unwrap_or_default();
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(err(|secret, key| SecretError::TooLarge { secret, key }));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| err(|secret, key| SecretError::NotUtf8 { secret, key }))?
        .trim();
    if text.is_empty() {
        return Err(err(|secret, key| SecretError::Empty { secret, key }));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err(|secret, key| SecretError::BadCharacters {
            secret,
            key,
        }));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Pairs = &'static [(&'static str, &'static [u8])];

    fn data(pairs: &[(&str, &[u8])]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
            .collect()
    }

    #[test]
    fn a_token_or_a_key_with_email_is_accepted() {
        let token = credentials_from_secret("cf", &data(&[("apiToken", b"  tok-123\n")]));
        assert_eq!(token.map(|c| c.kind()), Ok("apiToken"));
        assert_eq!(
            credentials_from_secret("cf", &data(&[("apiToken", b"tok-123")])).map(|c| c.id()),
            Ok(Credentials::api_token("tok-123").id()),
            "surrounding whitespace is trimmed"
        );
        let key = credentials_from_secret(
            "cf",
            &data(&[
                ("apiKey", b"k"),
                ("email", b"ops@example.com"),
                ("note", b"x"),
            ]),
        );
        assert_eq!(key.map(|c| c.kind()), Ok("globalKey"));
    }

    #[test]
    fn every_broken_secret_gets_its_own_error_naming_the_key() {
        let cases: Vec<(Pairs, SecretError)> = vec![
            (
                &[("apiToken", b"t"), ("apiKey", b"k"), ("email", b"e")],
                SecretError::BothKinds("cf".into()),
            ),
            (
                &[("apiToken", b"t"), ("apiKey", b"k")],
                SecretError::BothKinds("cf".into()),
            ),
            (
                &[("token", b"t")],
                SecretError::NoCredentials {
                    secret: "cf".into(),
                    present: "token".into(),
                },
            ),
            (
                &[],
                SecretError::NoCredentials {
                    secret: "cf".into(),
                    present: "none".into(),
                },
            ),
            (
                &[("apiKey", b"k")],
                SecretError::IncompleteGlobalKey {
                    secret: "cf".into(),
                    has: "apiKey",
                    missing: "email",
                },
            ),
            (
                &[("email", b"e")],
                SecretError::IncompleteGlobalKey {
                    secret: "cf".into(),
                    has: "email",
                    missing: "apiKey",
                },
            ),
            (
                &[("apiToken", b"")],
                SecretError::Empty {
                    secret: "cf".into(),
                    key: "apiToken",
                },
            ),
            (
                &[("apiToken", b" \n\t")],
                SecretError::Empty {
                    secret: "cf".into(),
                    key: "apiToken",
                },
            ),
            (
                &[("apiToken", b"\xff\xfe")],
                SecretError::NotUtf8 {
                    secret: "cf".into(),
                    key: "apiToken",
                },
            ),
            (
                &[("apiToken", b"two words")],
                SecretError::BadCharacters {
                    secret: "cf".into(),
                    key: "apiToken",
                },
            ),
            (
                &[("apiKey", b"k"), ("email", b"a\x07b")],
                SecretError::BadCharacters {
                    secret: "cf".into(),
                    key: "email",
                },
            ),
        ];
        for (pairs, expected) in cases {
            assert_eq!(
                credentials_from_secret("cf", &data(pairs)).map(|c| c.kind()),
                Err(expected.clone()),
                "{pairs:?}"
            );
        }
        let huge = vec![b'a'; 5000];
        assert_eq!(
            credentials_from_secret("cf", &data(&[("apiToken", &huge)])).map(|c| c.kind()),
            Err(SecretError::TooLarge {
                secret: "cf".into(),
                key: "apiToken"
            })
        );
    }

    #[test]
    fn error_messages_never_contain_the_values() {
        let secret_value: &[u8] = b"SUPER-SECRET-VALUE";
        let cases: Vec<BTreeMap<String, ByteString>> = vec![
            data(&[
                ("apiToken", secret_value),
                ("apiKey", secret_value),
                ("email", secret_value),
            ]),
            data(&[("apiKey", secret_value)]),
            data(&[("apiToken", b"SUPER-SECRET VALUE")]),
        ];
        for d in cases {
            let message = credentials_from_secret("cf", &d)
                .map(|c| c.kind())
                .expect_err("broken")
                .to_string();
            assert!(!message.contains("SUPER-SECRET"), "{message}");
        }
    }
}
