//! HTTP plumbing shared by the handlers: responses, bodies, query strings, paths.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::Value;

/// A complete response.
pub(crate) type Resp = Response<Full<Bytes>>;

/// What the server does with a request.
pub(crate) enum Reply {
    /// Send this response.
    Send(Resp),
    /// Close the connection without answering.
    Reset,
}

impl From<Resp> for Reply {
    fn from(r: Resp) -> Self {
        Reply::Send(r)
    }
}

/// Largest request body read (bigger bodies are refused before parsing).
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A JSON response.
pub(crate) fn json(status: u16, body: &Value) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// An empty response.
pub(crate) fn empty(status: u16) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp
}

/// Adds a header; values that are not valid header text are skipped.
pub(crate) fn set_header(resp: &mut Resp, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(HeaderName::from_static(name), v);
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    TooLarge,
    Io,
}

/// Reads a whole request body, up to `limit` bytes.
pub(crate) async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(BodyError::TooLarge)
            } else {
                Err(BodyError::Io)
            }
        }
    }
}

/// Decoded query parameters, in order.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The first value of query parameter `name` (exact, case-sensitive name).
pub(crate) fn query_get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Path segments after dropping leading slashes (so `//secrets` works like `/secrets`), keeping a
/// trailing empty segment when the path ends with `/`.
pub(crate) fn segments(path: &str) -> Vec<&str> {
    let trimmed = path.trim_start_matches('/');
    if trimmed.is_empty() {
        return Vec::new();
    }
    trimmed.split('/').collect()
}

/// A header as text, if present and valid UTF-8.
pub(crate) fn header<'a>(headers: &'a hyper::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments() {
        assert_eq!(segments("/"), Vec::<&str>::new());
        assert_eq!(segments("/secrets"), vec!["secrets"]);
        assert_eq!(segments("//secrets/a/"), vec!["secrets", "a", ""]);
    }

    #[test]
    fn queries() {
        let q = query_pairs(Some("api-version=7.4&%24skiptoken=a%2Bb&maxresults=3"));
        assert_eq!(query_get(&q, "api-version"), Some("7.4"));
        assert_eq!(query_get(&q, "$skiptoken"), Some("a+b"));
        assert_eq!(query_get(&q, "nope"), None);
    }
}
