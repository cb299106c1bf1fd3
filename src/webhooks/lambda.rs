//! AWS Lambda targets: `Invoke` with the webhook envelope as payload, signed with SigV4.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::delivery::{classify, discard_body, Failure};
use super::sigv4::{resolve_credentials, sign, uri_encode, Request};
use crate::config::LambdaTarget;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Invokes the function once; a function error (`X-Amz-Function-Error`) is a failed attempt.
pub(super) async fn invoke_lambda(
    client: &reqwest::Client,
    lambda: &LambdaTarget,
    timeout: Duration,
    body: String,
) -> Result<(), Failure> {
    let region = lambda
        .region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .ok_or_else(|| {
            Failure::Final("no region: set the endpoint's lambda.region or AWS_REGION".into())
        })?;
    let base = lambda
        .endpoint_url
        .clone()
        .unwrap_or_else(|| format!("https://lambda.{region}.amazonaws.com"));
    let path = format!(
        "/2015-03-31/functions/{}/invocations",
        uri_encode(&lambda.function_name, false)
    );
    let query = lambda
        .qualifier
        .as_deref()
        .map(|q| format!("Qualifier={}", uri_encode(q, false)))
        .unwrap_or_default();
    let mut url = reqwest::Url::parse(&base)
        .map_err(|e| Failure::Final(format!("lambda endpoint {base:?}: {e}")))?;
    url.set_path(&path);
    url.set_query((!query.is_empty()).then_some(query.as_str()));
    let host = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => {
            return Err(Failure::Final(format!(
                "lambda endpoint {base:?} has no host"
            )))
        }
    };
    let credentials = resolve_credentials(&env).map_err(Failure::Final)?;
    let signed_headers = [
        ("content-type", "application/json"),
        ("x-amz-invocation-type", lambda.invocation_type.as_str()),
    ];
    let request = Request {
        method: "POST",
        host: &host,
        path: url.path(),
        query: &query,
        headers: &signed_headers,
        body: body.as_bytes(),
    };
    let mut headers = HeaderMap::new();
    let added = sign(&request, &credentials, &region, "lambda", SystemTime::now());
    for (name, value) in signed_headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain(added)
    {
        let value =
            HeaderValue::from_str(&value).map_err(|e| Failure::Final(format!("{name}: {e}")))?;
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).expect("static header names"),
            value,
        );
    }
    let response = client
        .post(url)
        .timeout(timeout)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| Failure::Retryable(format!("lambda request failed: {e}")))?;
    let status = response.status().as_u16();
    let function_error = response
        .headers()
        .get("x-amz-function-error")
        .map(|v| v.to_str().unwrap_or("?").to_owned());
    discard_body(response).await;
    classify(status)?;
    match function_error {
        Some(kind) => Err(Failure::Retryable(format!("the function failed: {kind}"))),
        None => Ok(()),
    }
}
