//! Reading Cloudflare credentials out of a Secret's data (pure): exactly one
//! kind of credential, non-empty, UTF-8, no inner whitespace, bounded size.
//! The data keys are the policy's (`credentialsRef.apiTokenKey`, ...), with
//! defaults `apiToken`, `apiKey` and `email`.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;

use crate::{cloudflare::Credentials, crd::SecretKeys};

/// Longer values are certainly not Cloudflare credentials.
const MAX_VALUE_BYTES: usize = 4096;

/// What is wrong with a Secret's credentials. Messages name keys, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Both the token's key and the global key's or email's.
    #[error("Secret {secret} holds both {token_key} and {key_keys}; keep exactly one kind")]
    BothKinds {
        /// Secret name.
        secret: String,
        /// The token's data key.
        token_key: String,
        /// The global key's data keys, as `apiKey/email`.
        key_keys: String,
    },
    /// None of the expected keys.
    #[error(
        "Secret {secret} has no {token_key}, nor {key_key} and {email_key} (keys present: {present})"
    )]
    NoCredentials {
        /// Secret name.
        secret: String,
        /// The token's data key.
        token_key: String,
        /// The global key's data key.
        key_key: String,
        /// The email's data key.
        email_key: String,
        /// Key names found, comma-separated.
        present: String,
    },
    /// The global key without its email or the reverse.
    #[error("Secret {secret} has {has} but not {missing}; a global key needs both {both}")]
    IncompleteGlobalKey {
        /// Secret name.
        secret: String,
        /// The key that is there.
        has: String,
        /// The key that is missing.
        missing: String,
        /// Both keys, as `apiKey and email`.
        both: String,
    },
    /// A value is empty (or only whitespace).
    #[error("Secret {secret} key {key} is empty")]
    Empty {
        /// Secret name.
        secret: String,
        /// Data key.
        key: String,
    },
    /// A value is not UTF-8 text.
    #[error("Secret {secret} key {key} is not UTF-8 text")]
    NotUtf8 {
        /// Secret name.
        secret: String,
        /// Data key.
        key: String,
    },
    /// A value has whitespace or control characters inside it.
    #[error("Secret {secret} key {key} contains whitespace or control characters")]
    BadCharacters {
        /// Secret name.
        secret: String,
        /// Data key.
        key: String,
    },
    /// A value is far too long to be a credential.
    #[error("Secret {secret} key {key} is longer than {MAX_VALUE_BYTES} bytes")]
    TooLarge {
        /// Secret name.
        secret: String,
        /// Data key.
        key: String,
    },
}

/// Reads the credentials from a Secret's `data` under the policy's `keys`.
/// Surrounding whitespace (the newline `echo` adds) is trimmed; anything else
/// odd is an error.
pub fn credentials_from_secret(
    secret_name: &str,
    keys: SecretKeys<'_>,
    data: &BTreeMap<String, ByteString>,
) -> Result<Credentials, SecretError> {
    let has = |key: &str| data.contains_key(key);
    let secret = || secret_name.to_owned();
    match (has(keys.api_token), has(keys.api_key), has(keys.email)) {
        (true, false, false) => Ok(Credentials::api_token(value(
            secret_name,
            data,
            keys.api_token,
        )?)),
        (false, true, true) => Ok(Credentials::global_key(
            value(secret_name, data, keys.api_key)?,
            value(secret_name, data, keys.email)?,
        )),
        (true, _, _) => Err(SecretError::BothKinds {
            secret: secret(),
            token_key: keys.api_token.to_owned(),
            key_keys: format!("{}/{}", keys.api_key, keys.email),
        }),
        (false, true, false) => Err(SecretError::IncompleteGlobalKey {
            secret: secret(),
            has: keys.api_key.to_owned(),
            missing: keys.email.to_owned(),
            both: format!("{} and {}", keys.api_key, keys.email),
        }),
        (false, false, true) => Err(SecretError::IncompleteGlobalKey {
            secret: secret(),
            has: keys.email.to_owned(),
            missing: keys.api_key.to_owned(),
            both: format!("{} and {}", keys.api_key, keys.email),
        }),
        (false, false, false) => Err(SecretError::NoCredentials {
            secret: secret(),
            token_key: keys.api_token.to_owned(),
            key_key: keys.api_key.to_owned(),
            email_key: keys.email.to_owned(),
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
    key: &str,
) -> Result<String, SecretError> {
    let err = |make: fn(String, String) -> SecretError| make(secret.to_owned(), key.to_owned());
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
        let token = credentials_from_secret(
            "cf",
            SecretKeys::DEFAULT,
            &data(&[("apiToken", b"  tok-123\n")]),
        );
        assert_eq!(token.map(|c| c.kind()), Ok("apiToken"));
        assert_eq!(
            credentials_from_secret(
                "cf",
                SecretKeys::DEFAULT,
                &data(&[("apiToken", b"tok-123")])
            )
            .map(|c| c.id()),
            Ok(Credentials::api_token("tok-123").id()),
            "surrounding whitespace is trimmed"
        );
        let key = credentials_from_secret(
            "cf",
            SecretKeys::DEFAULT,
            &data(&[
                ("apiKey", b"k"),
                ("email", b"ops@example.com"),
                ("note", b"x"),
            ]),
        );
        assert_eq!(key.map(|c| c.kind()), Ok("globalKey"));
    }

    fn both() -> SecretError {
        SecretError::BothKinds {
            secret: "cf".into(),
            token_key: "apiToken".into(),
            key_keys: "apiKey/email".into(),
        }
    }

    fn no_credentials(present: &str) -> SecretError {
        SecretError::NoCredentials {
            secret: "cf".into(),
            token_key: "apiToken".into(),
            key_key: "apiKey".into(),
            email_key: "email".into(),
            present: present.into(),
        }
    }

    #[test]
    fn the_policy_names_the_keys_and_errors_name_its_keys() {
        let keys = SecretKeys {
            api_token: "cloudflare-token",
            api_key: "global.key",
            email: "owner_email",
        };
        let token = credentials_from_secret("cf", keys, &data(&[("cloudflare-token", b"tok")]));
        assert_eq!(
            token.map(|c| c.id()),
            Ok(Credentials::api_token("tok").id())
        );
        let key = credentials_from_secret(
            "cf",
            keys,
            &data(&[("global.key", b"k"), ("owner_email", b"ops@example.com")]),
        );
        assert_eq!(key.map(|c| c.kind()), Ok("globalKey"));
        // The default names mean nothing once the policy names others.
        let message = credentials_from_secret("cf", keys, &data(&[("apiToken", b"tok")]))
            .map(|c| c.kind())
            .expect_err("apiToken is not the named key")
            .to_string();
        assert_eq!(
            message,
            "Secret cf has no cloudflare-token, nor global.key and owner_email (keys present: apiToken)"
        );
        assert_eq!(
            credentials_from_secret("cf", keys, &data(&[("global.key", b"k")])).map(|c| c.kind()),
            Err(SecretError::IncompleteGlobalKey {
                secret: "cf".into(),
                has: "global.key".into(),
                missing: "owner_email".into(),
                both: "global.key and owner_email".into(),
            })
        );
    }

    #[test]
    fn every_broken_secret_gets_its_own_error_naming_the_key() {
        let cases: Vec<(Pairs, SecretError)> = vec![
            (
                &[("apiToken", b"t"), ("apiKey", b"k"), ("email", b"e")],
                both(),
            ),
            (&[("apiToken", b"t"), ("apiKey", b"k")], both()),
            (&[("token", b"t")], no_credentials("token")),
            (&[], no_credentials("none")),
            (
                &[("apiKey", b"k")],
                SecretError::IncompleteGlobalKey {
                    secret: "cf".into(),
                    has: "apiKey".into(),
                    missing: "email".into(),
                    both: "apiKey and email".into(),
                },
            ),
            (
                &[("email", b"e")],
                SecretError::IncompleteGlobalKey {
                    secret: "cf".into(),
                    has: "email".into(),
                    missing: "apiKey".into(),
                    both: "apiKey and email".into(),
                },
            ),
            (
                &[("apiToken", b"")],
                SecretError::Empty {
                    secret: "cf".into(),
                    key: "apiToken".into(),
                },
            ),
            (
                &[("apiToken", b" \n\t")],
                SecretError::Empty {
                    secret: "cf".into(),
                    key: "apiToken".into(),
                },
            ),
            (
                &[("apiToken", b"\xff\xfe")],
                SecretError::NotUtf8 {
                    secret: "cf".into(),
                    key: "apiToken".into(),
                },
            ),
            (
                &[("apiToken", b"two words")],
                SecretError::BadCharacters {
                    secret: "cf".into(),
                    key: "apiToken".into(),
                },
            ),
            (
                &[("apiKey", b"k"), ("email", b"a\x07b")],
                SecretError::BadCharacters {
                    secret: "cf".into(),
                    key: "email".into(),
                },
            ),
        ];
        for (pairs, expected) in cases {
            assert_eq!(
                credentials_from_secret("cf", SecretKeys::DEFAULT, &data(pairs)).map(|c| c.kind()),
                Err(expected.clone()),
                "{pairs:?}"
            );
        }
        let huge = vec![b'a'; 5000];
        assert_eq!(
            credentials_from_secret("cf", SecretKeys::DEFAULT, &data(&[("apiToken", &huge)]))
                .map(|c| c.kind()),
            Err(SecretError::TooLarge {
                secret: "cf".into(),
                key: "apiToken".into()
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
            let message = credentials_from_secret("cf", SecretKeys::DEFAULT, &d)
                .map(|c| c.kind())
                .expect_err("broken")
                .to_string();
            assert!(!message.contains("SUPER-SECRET"), "{message}");
        }
    }
}
