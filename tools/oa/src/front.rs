//! The local front of the webhook's Function URL (`oa local front`), between callers and
//! `cargo lambda watch`.
//!
//! A Lambda Function URL hands the function a body that is not text base64-encoded, so the
//! function sees every byte and answers for itself (a signed body cut inside a UTF-8 character:
//! 400). `cargo lambda watch` base64-encodes by content type only, and answers a body that claims
//! to be JSON but is not UTF-8 with its own 500, before the function runs: LINE would redeliver
//! such a body for ever. The front passes every request through unchanged, except that a body
//! that is not UTF-8 is labelled `application/octet-stream`, which makes `cargo lambda watch` do
//! what a Function URL does. Nothing else differs: the signature covers the body, not the headers.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;

struct Front {
    upstream: String,
    http: reqwest::Client,
}

/// Serves on `listen`, passing requests to `upstream` (e.g. `http://127.0.0.1:9000/lambda-url/webhook`).
pub async fn serve(listen: SocketAddr, upstream: &str) -> std::io::Result<()> {
    let front = Arc::new(Front { upstream: upstream.trim_end_matches('/').to_string(), http: reqwest::Client::new() });
    let app = axum::Router::new().fallback(pass).with_state(front);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, app).await
}

async fn pass(State(front): State<Arc<Front>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let binary = !body.is_empty() && std::str::from_utf8(&body).is_err();
    let mut request = front.http.request(method, format!("{}{path}", front.upstream));
    for (name, value) in &headers {
        let skip = matches!(name.as_str(), "host" | "content-length" | "transfer-encoding" | "connection")
            || (binary && name.as_str() == "content-type");
        if !skip {
            request = request.header(name, value);
        }
    }
    if binary {
        request = request.header("content-type", HeaderValue::from_static("application/octet-stream"));
    }
    let upstream = match request.body(body).send().await {
        Ok(r) => r,
        Err(e) => return plain(StatusCode::BAD_GATEWAY, format!("the functions do not answer: {e}")),
    };
    let status = upstream.status();
    let upstream_headers = upstream.headers().clone();
    let bytes = upstream.bytes().await.unwrap_or_default();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    for (name, value) in &upstream_headers {
        if !matches!(name.as_str(), "content-length" | "transfer-encoding" | "connection") {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

fn plain(status: StatusCode, text: String) -> Response {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response
}
