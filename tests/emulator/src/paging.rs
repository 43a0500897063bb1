//! Paging of list answers: `maxresults`, the `$skiptoken` marker and the `nextLink`.

use crate::http::{json, query_get, Resp};
use crate::state::Shared;
use crate::vault::MAX_RESULTS;
use crate::vault_error::VaultError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

/// `maxresults` and `$skiptoken` of a list request.
pub(crate) struct Paging {
    max: usize,
    max_given: bool,
    marker: Option<String>,
}

impl Paging {
    /// Reads `maxresults` (1 to [`MAX_RESULTS`]) and `$skiptoken` from the query.
    pub(crate) fn from_query(query: &[(String, String)]) -> Result<Paging, VaultError> {
        let (max, max_given) = match query_get(query, "maxresults") {
            None => (MAX_RESULTS, false),
            Some(raw) => match raw.trim().parse::<i64>() {
                Ok(n) if (1..=MAX_RESULTS as i64).contains(&n) => (n as usize, true),
                _ => {
                    return Err(VaultError::bad_parameter(format!(
                        "Invalid value '{raw}' for parameter maxresults: it must be an integer from 1 to \
                         {MAX_RESULTS}."
                    )))
                }
            },
        };
        let marker = match query_get(query, "$skiptoken") {
            None | Some("") => None,
            Some(token) => Some(decode_skiptoken(token).ok_or_else(|| {
                VaultError::bad_parameter(format!("The skip token '{token}' is not valid."))
            })?),
        };
        Ok(Paging {
            max,
            max_given,
            marker,
        })
    }

    /// The page of `items` (sorted by key) after the marker, and the marker of the next page.
    pub(crate) fn page<T>(&self, mut items: Vec<(String, T)>) -> (Vec<T>, Option<String>) {
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let mut rest: Vec<(String, T)> = items
            .into_iter()
            .filter(|(k, _)| self.marker.as_ref().is_none_or(|m| k > m))
            .collect();
        let more = rest.len() > self.max;
        rest.truncate(self.max);
        let next = if more {
            rest.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        (rest.into_iter().map(|(_, v)| v).collect(), next)
    }
}

fn encode_skiptoken(marker: &str) -> String {
    URL_SAFE_NO_PAD.encode(json!({"NextMarker": marker, "TargetLocation": 0}).to_string())
}

fn decode_skiptoken(token: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("NextMarker")?.as_str().map(str::to_string)
}

/// A list answer: `value` and `nextLink` (null on the last page), which repeats a given
/// `maxresults`.
pub(crate) fn list_response(
    shared: &Shared,
    items: Vec<Value>,
    next: Option<String>,
    path: &str,
    api_version: &str,
    paging: &Paging,
) -> Resp {
    let next_link = next.map(|marker| {
        let mut link = format!(
            "{}{path}?api-version={api_version}&$skiptoken={}",
            shared.settings.vault_url,
            encode_skiptoken(&marker)
        );
        if paging.max_given {
            link.push_str(&format!("&maxresults={}", paging.max));
        }
        link
    });
    json(200, &json!({"value": items, "nextLink": next_link}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skiptoken_round_trip() {
        assert_eq!(
            decode_skiptoken(&encode_skiptoken("abc")).as_deref(),
            Some("abc")
        );
        assert_eq!(decode_skiptoken("!!"), None);
        assert_eq!(decode_skiptoken(&URL_SAFE_NO_PAD.encode("[1]")), None);
    }

    #[test]
    fn paging() {
        let p = Paging {
            max: 2,
            max_given: true,
            marker: None,
        };
        let items = vec![("b".to_string(), 2), ("a".into(), 1), ("c".into(), 3)];
        let (page, next) = p.page(items.clone());
        assert_eq!((page, next.as_deref()), (vec![1, 2], Some("b")));
        let p = Paging {
            marker: Some("b".into()),
            ..p
        };
        assert_eq!(p.page(items), (vec![3], None));
    }
}
