//! A client for the admin API over plain HTTP/1.1 (the API listens on loopback by default).

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::AdminKey;
use super::error::ErrorBody;
use super::handlers::{
    AuditList, CreateResponse, CredentialList, RevokeResponse, RotateRequest, RotateResponse,
    SessionList, SessionResponse,
};
use crate::credentials::{AuditFilter, Credential, CredentialUpdate, NewCredential};

/// How long one admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest accepted response body.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// A failed admin API call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The base URL is unusable.
    #[error("invalid admin URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request could not be sent or the response not read.
    #[error("cannot reach the admin API at `{url}`: {reason}")]
    Transport {
        /// The base URL.
        url: String,
        /// The cause.
        reason: String,
    },
    /// The API answered with an error.
    #[error("admin API error ({status}, {code}): {message}")]
    Api {
        /// The HTTP status.
        status: StatusCode,
        /// The error code.
        code: String,
        /// The error message.
        message: String,
    },
    /// The response was not the expected JSON.
    #[error("unexpected admin API response ({status}): {reason}")]
    Decode {
        /// The HTTP status.
        status: StatusCode,
        /// What could not be decoded.
        reason: String,
    },
}

/// A client for one admin API.
#[derive(Debug, Clone)]
pub struct AdminClient {
    base: String,
    key: AdminKey,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    /// A client for the API at `base_url` (`http://127.0.0.1:4041`).
    pub fn new(base_url: &str, key: AdminKey) -> Result<Self, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidUrl {
            url: base_url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = base_url.parse().map_err(|_| invalid("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(invalid(
                    "https is not supported; the admin API listens on plain HTTP on loopback",
                ));
            }
            _ => return Err(invalid("expected `http://host:port`")),
        }
        if uri.host().is_none() {
            return Err(invalid("missing host"));
        }
        if uri.query().is_some() || !matches!(uri.path(), "" | "/") {
            return Err(invalid("expected no path or query"));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            base: base_url.trim_end_matches('/').to_owned(),
            key,
            http,
        })
    }

    /// `POST /v1/credentials`.
    pub async fn create(&self, new: &NewCredential) -> Result<CreateResponse, ClientError> {
        self.call(Method::POST, "/v1/credentials", Some(new)).await
    }

    /// `GET /v1/credentials`.
    pub async fn list(&self) -> Result<Vec<Credential>, ClientError> {
        let list: CredentialList = self
            .call(Method::GET, "/v1/credentials", None::<&()>)
            .await?;
        Ok(list.credentials)
    }

    /// `GET /v1/credentials/{id}`.
    pub async fn get(&self, id: &str) -> Result<Credential, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/credentials/{}", segment(id)),
            None::<&()>,
        )
        .await
    }

    /// `PATCH /v1/credentials/{id}`.
    pub async fn update(
        &self,
        id: &str,
        update: &CredentialUpdate,
    ) -> Result<Credential, ClientError> {
        self.call(
            Method::PATCH,
            &format!("/v1/credentials/{}", segment(id)),
            Some(update),
        )
        .await
    }

    /// `POST /v1/credentials/{id}/rotate`.
    pub async fn rotate(
        &self,
        id: &str,
        grace: Option<&str>,
    ) -> Result<RotateResponse, ClientError> {
        let body = RotateRequest {
            grace: grace.map(str::to_owned),
        };
        self.call(
            Method::POST,
            &format!("/v1/credentials/{}/rotate", segment(id)),
            Some(&body),
        )
        .await
    }

    /// `POST /v1/credentials/{id}/revoke`.
    pub async fn revoke(&self, id: &str) -> Result<RevokeResponse, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/credentials/{}/revoke", segment(id)),
            None::<&()>,
        )
        .await
    }

    /// `GET /v1/sessions`.
    pub async fn sessions(&self) -> Result<SessionList, ClientError> {
        self.call(Method::GET, "/v1/sessions", None::<&()>).await
    }

    /// `DELETE /v1/sessions/{id}`.
    pub async fn kill_session(&self, id: &str) -> Result<SessionResponse, ClientError> {
        self.call(
            Method::DELETE,
            &format!("/v1/sessions/{}", segment(id)),
            None::<&()>,
        )
        .await
    }

    /// `GET /v1/audit`; `since` is passed through (RFC 3339 or a duration like `1h`).
    pub async fn audit(
        &self,
        since: Option<&str>,
        limit: Option<usize>,
    ) -> Result<AuditList, ClientError> {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if let Some(since) = since {
            query.append_pair("since", since);
        }
        if let Some(limit) = limit {
            query.append_pair("limit", &limit.min(AuditFilter::MAX_LIMIT).to_string());
        }
        let query = query.finish();
        let path = if query.is_empty() {
            "/v1/audit".to_owned()
        } else {
            format!("/v1/audit?{query}")
        };
        self.call(Method::GET, &path, None::<&()>).await
    }

    async fn call<T, B>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError>
    where
        T: DeserializeOwned,
        B: Serialize + ?Sized,
    {
        let transport = |reason: String| ClientError::Transport {
            url: self.base.clone(),
            reason,
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(AUTHORIZATION, format!("Bearer {}", self.key.expose()));
        let payload = match body {
            Some(body) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                serde_json::to_vec(body).map_err(|e| transport(e.to_string()))?
            }
            None => Vec::new(),
        };
        let request = builder
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| transport(e.to_string()))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| transport(error_chain(&e)))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| transport(e.to_string()))?
                .to_bytes();
            Ok::<_, ClientError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| transport("timed out".to_owned()))??;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(body) => ClientError::Api {
                    status,
                    code: body.error.code,
                    message: body.error.message,
                },
                Err(_) => ClientError::Decode {
                    status,
                    reason: "error response without a JSON error body".to_owned(),
                },
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            status,
            reason: e.to_string(),
        })
    }
}

/// Percent-encodes a path segment typed by a user.
fn segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// An error and its sources, joined (hyper's top-level messages are terse).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AdminKey {
        AdminKey::new("0123456789abcdef").unwrap()
    }

    #[test]
    fn base_url_is_validated() {
        assert!(AdminClient::new("http://127.0.0.1:4041", key()).is_ok());
        assert!(AdminClient::new("http://127.0.0.1:4041/", key()).is_ok());
        for bad in [
            "https://127.0.0.1:1",
            "127.0.0.1:1",
            "http://h/x",
            "ftp://h",
            "not a url",
        ] {
            assert!(
                matches!(
                    AdminClient::new(bad, key()),
                    Err(ClientError::InvalidUrl { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(segment("cr_abc"), "cr_abc");
        assert_eq!(segment("a/b?c"), "a%2Fb%3Fc");
    }
}
