//! [`Query<T>`]: the query string as a typed `T`, refusing a parameter `T`
//! does not name (400 naming it, as docs/api.md says), and the checks of
//! single values ([`number`], [`flag`]).

use axum::{extract::FromRequestParts, http::request::Parts};
use serde::{de::DeserializeOwned, Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::error::ApiError;

/// The parameters of one endpoint: every field a string (`Option<String>`,
/// read with [`first`]) or a list of strings (`Vec<String>`, read with
/// [`all`], for a parameter that may repeat).
pub trait Params: DeserializeOwned {
    /// The names this endpoint takes; any other is refused.
    const ALLOWED: &'static [&'static str];
}

/// No parameters at all.
#[derive(Debug, Default, Deserialize)]
pub struct NoParams {}

impl Params for NoParams {
    const ALLOWED: &'static [&'static str] = &[];
}

/// The extractor.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: Params, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> =
            form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        if let Some((k, _)) = pairs
            .iter()
            .find(|(k, _)| !T::ALLOWED.contains(&k.as_str()))
        {
            return Err(ApiError::bad_request(
                k,
                if T::ALLOWED.is_empty() {
                    "unknown query parameter; this endpoint takes none".to_string()
                } else {
                    format!(
                        "unknown query parameter; this endpoint takes {}",
                        T::ALLOWED.join(", ")
                    )
                },
            ));
        }
        // A repeated name becomes a list; `first` and `all` read either.
        let mut map = Map::new();
        for (k, v) in pairs {
            match map.get_mut(&k) {
                Some(Value::Array(list)) => list.push(Value::String(v)),
                Some(one) => *one = Value::Array(vec![one.take(), Value::String(v)]),
                None => {
                    map.insert(k, Value::String(v));
                }
            }
        }
        serde_json::from_value(Value::Object(map))
            .map(Query)
            .map_err(|e| ApiError::bad_request("query", e.to_string()))
    }
}

/// A string or strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The first value of a parameter (a repeated one keeps its first).
pub fn first<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => None,
        Some(OneOrMany::One(s)) => Some(s),
        Some(OneOrMany::Many(v)) => v.into_iter().next(),
    })
}

/// Every value of a parameter that may repeat.
pub fn all<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// `value` as a number in `range`, `default` when absent; a 400 naming
/// `key` otherwise.
pub fn number(
    value: Option<&str>,
    key: &str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, ApiError> {
    match value {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    key,
                    format!("must be a number in {}..={}", range.start(), range.end()),
                )
            }),
    }
}

/// `true`/`false` (absent or empty: `None`); a 400 naming `key` otherwise.
pub fn flag(value: Option<&str>, key: &str) -> Result<Option<bool>, ApiError> {
    match value {
        None | Some("") => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(ApiError::bad_request(key, "must be true or false")),
    }
}
