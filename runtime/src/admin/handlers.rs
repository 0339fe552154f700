//! Routing and request handlers of the admin API.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Body;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::{AdminState, MAX_BODY_BYTES, ROUTES};
use crate::credentials::{
    Actor, AuditAction, AuditFilter, AuditRecord, Credential, CredentialId, CredentialUpdate,
    IssuedCredential, NewAuditRecord, NewCredential, Rotation, SessionId, SessionInfo, Timestamp,
    parse_duration,
};

/// Response of `POST /v1/credentials`: the credential and its token (shown only here).
pub type CreateResponse = IssuedCredential;

/// Response of `POST /v1/credentials/{id}/rotate`.
pub type RotateResponse = Rotation;

/// Response of `GET /v1/credentials`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CredentialList {
    /// Every credential, oldest first.
    pub credentials: Vec<Credential>,
}

/// Body of `POST /v1/credentials/{id}/rotate`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// How long the old token keeps working (`0`, `90s`, `1h`); `0` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<String>,
}

/// Response of `POST /v1/credentials/{id}/revoke`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeResponse {
    /// The revoked credential.
    pub credential: Credential,
    /// The live sessions that were told to close.
    pub sessions_closed: Vec<SessionId>,
}

/// Response of `GET /v1/sessions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionList {
    /// Live sessions, oldest first.
    pub sessions: Vec<SessionInfo>,
}

/// Response of `DELETE /v1/sessions/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionResponse {
    /// The session, now closing.
    pub session: SessionInfo,
}

/// Response of `GET /v1/audit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditList {
    /// Matching records, oldest first.
    pub records: Vec<AuditRecord>,
}

/// A matched route with its path parameter.
enum Matched<'a> {
    CreateCredential,
    ListCredentials,
    GetCredential(&'a str),
    UpdateCredential(&'a str),
    RotateCredential(&'a str),
    RevokeCredential(&'a str),
    ListSessions,
    KillSession(&'a str),
    ListAudit,
}

pub(super) async fn handle<B>(
    state: &AdminState,
    peer: SocketAddr,
    request: Request<B>,
) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let result = match authorize(state, &request) {
        Ok(()) => dispatch(state, peer, request).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(response) => response,
        Err(error) => error_response(&error),
    }
}

fn authorize<B>(state: &AdminState, request: &Request<B>) -> Result<(), ApiError> {
    let presented = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        Some(key) if state.key.verify(key.trim()) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the admin key is not valid",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing `Authorization: Bearer <admin key>` header",
        )),
    }
}

/// Finds the route for a method and path: `route_not_found` (404) when no pattern matches the
/// path, `method_not_allowed` (405) when one matches with another method.
fn route<'a>(method: &Method, path: &'a str) -> Result<Matched<'a>, ApiError> {
    let segments: Vec<&str> = path.split('/').collect();
    let mut path_matched = false;
    for route in ROUTES {
        let pattern: Vec<&str> = route.path.split('/').collect();
        if pattern.len() != segments.len() {
            continue;
        }
        let mut param = None;
        let matches = pattern.iter().zip(&segments).all(|(p, s)| {
            if *p == "{id}" {
                param = Some(*s);
                !s.is_empty()
            } else {
                p == s
            }
        });
        if !matches {
            continue;
        }
        path_matched = true;
        if method.as_str() != route.method {
            continue;
        }
        let id = param.unwrap_or_default();
        return Ok(match (route.method, route.path) {
            ("POST", "/v1/credentials") => Matched::CreateCredential,
            ("GET", "/v1/credentials") => Matched::ListCredentials,
            ("GET", "/v1/credentials/{id}") => Matched::GetCredential(id),
            ("PATCH", "/v1/credentials/{id}") => Matched::UpdateCredential(id),
            ("POST", "/v1/credentials/{id}/rotate") => Matched::RotateCredential(id),
            ("POST", "/v1/credentials/{id}/revoke") => Matched::RevokeCredential(id),
            ("GET", "/v1/sessions") => Matched::ListSessions,
            ("DELETE", "/v1/sessions/{id}") => Matched::KillSession(id),
            ("GET", "/v1/audit") => Matched::ListAudit,
            _ => break,
        });
    }
    if path_matched {
        let allowed: Vec<&str> = ROUTES
            .iter()
            .filter(|r| route_matches_path(r.path, &segments))
            .map(|r| r.method)
            .collect();
        Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!(
                "`{method}` is not allowed on `{}` (allowed: {})",
                clip(path),
                allowed.join(", ")
            ),
        ))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "route_not_found",
            format!("no admin API route `{} {}`", method, clip(path)),
        ))
    }
}

fn route_matches_path(pattern: &str, segments: &[&str]) -> bool {
    let pattern: Vec<&str> = pattern.split('/').collect();
    pattern.len() == segments.len()
        && pattern
            .iter()
            .zip(segments)
            .all(|(p, s)| (*p == "{id}" && !s.is_empty()) || p == s)
}

async fn dispatch<B>(
    state: &AdminState,
    peer: SocketAddr,
    request: Request<B>,
) -> Result<Response<Full<Bytes>>, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let actor = Actor::new("admin-api", Some(peer.to_string()));
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let svc = &state.credentials;
    match route(&parts.method, &path)? {
        Matched::CreateCredential => {
            let new: NewCredential =
                audit_rejection(state, &actor, AuditAction::CredentialCreate, None, async {
                    read_json(body, &parts.headers).await
                })
                .await?;
            let actor = actor.clone();
            let issued = svc.blocking(move |store| store.create(new, &actor)).await?;
            json_response(StatusCode::CREATED, &issued)
        }
        Matched::ListCredentials => {
            let credentials = svc.blocking(|store| store.list()).await?;
            json_response(StatusCode::OK, &CredentialList { credentials })
        }
        Matched::GetCredential(id) => {
            let id = credential_id(id)?;
            let credential = svc.blocking(move |store| store.get(&id)).await?;
            json_response(StatusCode::OK, &credential)
        }
        Matched::UpdateCredential(raw_id) => {
            let action = AuditAction::CredentialUpdate;
            let (id, update) = audit_rejection(state, &actor, action, Some(raw_id), async {
                let id = credential_id(raw_id)?;
                let update: CredentialUpdate = read_json(body, &parts.headers).await?;
                if update.is_empty() {
                    return Err(ApiError::invalid("the update names no fields to change"));
                }
                Ok((id, update))
            })
            .await?;
            let actor = actor.clone();
            let credential = svc
                .blocking(move |store| store.update(&id, update, &actor))
                .await?;
            json_response(StatusCode::OK, &credential)
        }
        Matched::RotateCredential(raw_id) => {
            let action = AuditAction::CredentialRotate;
            let (id, grace) = audit_rejection(state, &actor, action, Some(raw_id), async {
                let id = credential_id(raw_id)?;
                let request: RotateRequest = read_json_or_default(body, &parts.headers).await?;
                let grace = match request.grace.as_deref() {
                    Some(text) => {
                        parse_duration(text).map_err(|e| ApiError::invalid(e.to_string()))?
                    }
                    None => std::time::Duration::ZERO,
                };
                Ok((id, grace))
            })
            .await?;
            let rotation = svc.rotate(&id, grace, &actor).await?;
            json_response(StatusCode::OK, &rotation)
        }
        Matched::RevokeCredential(raw_id) => {
            let action = AuditAction::CredentialRevoke;
            let id = audit_rejection(state, &actor, action, Some(raw_id), async {
                let id = credential_id(raw_id)?;
                drain(body).await?;
                Ok(id)
            })
            .await?;
            let (credential, sessions_closed) = svc.revoke(&id, &actor).await?;
            json_response(
                StatusCode::OK,
                &RevokeResponse {
                    credential,
                    sessions_closed,
                },
            )
        }
        Matched::ListSessions => json_response(
            StatusCode::OK,
            &SessionList {
                sessions: svc.sessions().list(),
            },
        ),
        Matched::KillSession(raw_id) => {
            let not_found =
                || ApiError::not_found(format!("no live session with id `{}`", clip(raw_id)));
            let Some(id) = SessionId::parse(raw_id) else {
                let error = not_found();
                record_failure(
                    state,
                    &actor,
                    AuditAction::SessionKill,
                    Some(raw_id),
                    &error,
                )
                .await;
                return Err(error);
            };
            let session = svc.kill_session(&id, &actor).await.ok_or_else(not_found)?;
            json_response(StatusCode::OK, &SessionResponse { session })
        }
        Matched::ListAudit => {
            let filter = audit_filter(query.as_deref())?;
            let records = svc.blocking(move |store| store.list_audit(&filter)).await?;
            json_response(StatusCode::OK, &AuditList { records })
        }
    }
}

/// Runs the request-parsing step of a mutating route; when it fails, records the failure in the
/// audit log before returning the error.
async fn audit_rejection<T>(
    state: &AdminState,
    actor: &Actor,
    action: AuditAction,
    target: Option<&str>,
    parse: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let result = parse.await;
    if let Err(error) = &result {
        record_failure(state, actor, action, target, error).await;
    }
    result
}

async fn record_failure(
    state: &AdminState,
    actor: &Actor,
    action: AuditAction,
    target: Option<&str>,
    error: &ApiError,
) {
    let record = NewAuditRecord::failed(
        actor,
        action,
        target.map(clip),
        &error.code,
        error.message.clone(),
    );
    let written = state
        .credentials
        .blocking(move |store| store.append_audit(&record))
        .await;
    if let Err(audit_error) = written {
        tracing::error!(%audit_error, "failed to write audit record");
    }
}

fn credential_id(text: &str) -> Result<CredentialId, ApiError> {
    CredentialId::parse(text)
        .ok_or_else(|| ApiError::not_found(format!("no credential with id `{}`", clip(text))))
}

fn audit_filter(query: Option<&str>) -> Result<AuditFilter, ApiError> {
    let mut filter = AuditFilter::default();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "since" => {
                let since = Timestamp::parse_since(&value, Timestamp::now())
                    .map_err(|e| ApiError::invalid(e.to_string()))?;
                filter.since = Some(since);
            }
            "limit" => {
                let limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=AuditFilter::MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid(format!(
                            "`limit` must be between 1 and {}",
                            AuditFilter::MAX_LIMIT
                        ))
                    })?;
                filter.limit = Some(limit);
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown query parameter `{}` (expected `since` or `limit`)",
                    clip(other)
                )));
            }
        }
    }
    Ok(filter)
}

async fn read_body<B>(body: B, headers: &http::HeaderMap) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(too_large()),
        Err(error) => Err(ApiError::invalid(format!(
            "cannot read the request body: {error}"
        ))),
    }
}

async fn drain<B>(body: B) -> Result<(), ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    read_body(body, &http::HeaderMap::new()).await.map(drop)
}

async fn read_json<T, B>(body: B, headers: &http::HeaderMap) -> Result<T, ApiError>
where
    T: DeserializeOwned,
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = read_body(body, headers).await?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

async fn read_json_or_default<T, B>(body: B, headers: &http::HeaderMap) -> Result<T, ApiError>
where
    T: DeserializeOwned + Default,
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = read_body(body, headers).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

fn json_response<T: Serialize>(
    status: StatusCode,
    value: &T,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let body = serde_json::to_vec(value).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("cannot encode the response: {e}"),
        )
    })?;
    Ok(build_response(status, body))
}

fn error_response(error: &ApiError) -> Response<Full<Bytes>> {
    // An error body always serialises: it is two strings.
    let body = serde_json::to_vec(&error.to_body()).unwrap_or_default();
    let mut response = build_response(error.status, body);
    if error.status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

fn build_response(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Responses may carry a token (create, rotate): never cache them.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// User input for a message, bounded in length.
fn clip(text: &str) -> String {
    const LIMIT: usize = 80;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_distinguishes_404_and_405() {
        assert!(matches!(
            route(&Method::GET, "/v1/credentials/cr_x"),
            Ok(Matched::GetCredential("cr_x"))
        ));
        assert!(matches!(
            route(&Method::POST, "/v1/credentials/cr_x/rotate"),
            Ok(Matched::RotateCredential("cr_x"))
        ));
        let err = route(&Method::PUT, "/v1/credentials/cr_x").err().unwrap();
        assert_eq!(err.status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(err.message.contains("GET, PATCH"), "{}", err.message);
        let err = route(&Method::GET, "/v1/nope").err().unwrap();
        assert_eq!(err.code, "route_not_found");
        let err = route(&Method::GET, "/v1/credentials//rotate")
            .err()
            .unwrap();
        assert_eq!(err.code, "route_not_found");
    }

    #[test]
    fn audit_query_is_validated() {
        assert_eq!(audit_filter(None).unwrap(), AuditFilter::default());
        let filter = audit_filter(Some("since=2026-01-01T00%3A00%3A00Z&limit=5")).unwrap();
        assert_eq!(filter.limit, Some(5));
        assert!(filter.since.is_some());
        assert!(audit_filter(Some("limit=0")).is_err());
        assert!(audit_filter(Some("since=yesterday")).is_err());
        assert!(audit_filter(Some("token=x")).is_err());
    }
}
