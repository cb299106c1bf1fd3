//! AWS Lambda targets: `Invoke` with the webhook envelope as payload, signed with SigV4.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::credentials;
use super::delivery::{classify, describe_error, discard_body, Answer, Failure};
use crate::config::{redacted, LambdaTarget};

/// RFC 3986 unreserved characters stay; everything else in a path segment or query value is
/// escaped, as the Lambda API expects.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn uri_encode(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The request URL of `lambda`'s `Invoke`, and its region.
fn invoke_url(lambda: &LambdaTarget) -> Result<(reqwest::Url, String), Failure> {
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
    let mut url = reqwest::Url::parse(&base)
        .map_err(|e| Failure::Final(format!("lambda endpoint {:?}: {e}", redacted(&base))))?;
    if url.host_str().is_none() {
        return Err(Failure::Final(format!(
            "lambda endpoint {:?} has no host",
            redacted(&base)
        )));
    }
    let function = uri_encode(&lambda.function_name);
    url.set_path(&format!("/2015-03-31/functions/{function}/invocations"));
    let qualifier = lambda.qualifier.as_deref().map(uri_encode);
    url.set_query(qualifier.map(|q| format!("Qualifier={q}")).as_deref());
    Ok((url, region))
}

/// The request's headers with the SigV4 ones (`authorization`, `x-amz-date`, the session
/// token) added by `aws-sigv4`.
fn signed_headers(
    url: &reqwest::Url,
    region: &str,
    credentials: credentials::Credentials,
    invocation_type: &str,
    body: &[u8],
) -> Result<HeaderMap, Failure> {
    let fail = |what: &str, e: &dyn std::fmt::Display| Failure::Final(format!("{what}: {e}"));
    let identity: Identity = aws_credential_types::Credentials::from(credentials).into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("lambda")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| fail("SigV4 parameters", &e))?
        .into();
    let headers = [
        ("content-type", "application/json"),
        ("x-amz-invocation-type", invocation_type),
    ];
    let signable = SignableRequest::new(
        "POST",
        url.as_str(),
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| fail("SigV4 request", &e))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| fail("SigV4 signing", &e))?
        .into_parts();
    let mut map = HeaderMap::new();
    for (name, value) in headers.into_iter().chain(instructions.headers()) {
        let value = HeaderValue::from_str(value).map_err(|e| fail(name, &e))?;
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| fail(name, &e))?;
        map.insert(name, value);
    }
    Ok(map)
}

/// Invokes the function once; a function error (`X-Amz-Function-Error`) is a failed attempt
/// even under a 2xx.
pub(super) async fn invoke_lambda(
    client: &reqwest::Client,
    lambda: &LambdaTarget,
    timeout: Duration,
    body: String,
) -> Result<Answer, Failure> {
    let (url, region) = invoke_url(lambda)?;
    let credentials = credentials::current().await.map_err(Failure::Final)?;
    let headers = signed_headers(
        &url,
        &region,
        credentials,
        &lambda.invocation_type,
        body.as_bytes(),
    )?;
    let response = client
        .post(url)
        .timeout(timeout)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| Failure::Retryable(format!("lambda {}", describe_error(e))))?;
    let status = response.status().as_u16();
    let function_error = response
        .headers()
        .get("x-amz-function-error")
        .map(|v| v.to_str().unwrap_or("?").to_owned());
    discard_body(response).await;
    let verdict = classify(status).and_then(|()| match function_error {
        Some(kind) => Err(Failure::Retryable(format!("the function failed: {kind}"))),
        None => Ok(()),
    });
    Ok(Answer { status, verdict })
}
