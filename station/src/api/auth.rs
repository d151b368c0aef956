//! Who is calling: the bearer token's row, checked on every request, and the request log line
//! that names it.

use super::error::ApiError;
use super::token::{self, Scope, TokenName};
use super::{ApiState, Shared};
use crate::custody::Operation;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// How often a token's last use is written: not on every request.
const TOUCH_EVERY_MS: i64 = 60_000;

/// The caller of a request: a valid, unrevoked token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: TokenName,
    pub scopes: Vec<Scope>,
}

impl Caller {
    /// Refuses a token without `scope`, or an operation the serving operator may not do.
    pub fn may(&self, state: &ApiState, scope: Scope, operation: Operation) -> Result<(), ApiError> {
        if !self.scopes.contains(&scope) {
            return Err(ApiError::forbidden(
                format!("token {} lacks the scope {scope}", self.token),
                "create a token with that scope (`keyfill api token create --scope …`)",
            ));
        }
        (state.authorise)(operation).map_err(|reason| {
            ApiError::forbidden(
                format!("operator {} serving the API may not do this: {reason}", state.operator),
                "serve the API as an operator whose role allows it (`keyfill serve --as NAME`)",
            )
        })
    }
}

/// The token's name, for the request's log line, once the caller is known.
#[derive(Clone, Default)]
struct CallerSlot(Arc<Mutex<Option<TokenName>>>);

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("no Authorization header"))?
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
        let presented = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::unauthorized("the Authorization header is not `Bearer TOKEN`"))?;
        let (id, secret) =
            token::split(presented.trim()).ok_or_else(|| ApiError::unauthorized("that is not a Keyfill API token"))?;
        let pool = state.station.inventory.pool();
        let stored = crate::db::api_tokens::find(pool, id).await?;
        // One answer for every wrong token: no hint which part was wrong.
        let refused = || ApiError::unauthorized("unknown or revoked token");
        let stored = stored.ok_or_else(refused)?;
        if stored.revoked_at.is_some() || !token::matches(secret, &stored.secret_hash) {
            return Err(refused());
        }
        let now = crate::db::now_millis();
        if stored.last_used_at.is_none_or(|at| now - at > TOUCH_EVERY_MS)
            && let Err(error) = crate::db::api_tokens::touch(pool, &stored.id, now).await
        {
            tracing::warn!(%error, "cannot note an API token's use");
        }
        if let Some(slot) = parts.extensions.get::<CallerSlot>() {
            *slot.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(stored.name.clone());
        }
        Ok(Caller { token: stored.name, scopes: stored.scopes })
    }
}

/// Logs each request once answered: method, path, status, time, the token that made it and the
/// operator it acted as.
pub async fn log_request(State(state): State<Shared>, mut request: Request, next: Next) -> Response {
    let slot = CallerSlot::default();
    request.extensions_mut().insert(slot.clone());
    let method = request.method().clone();
    // The path only: a query may hold anything.
    let path = keyfill_formats::printable(request.uri().path()).into_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let token = slot.0.lock().unwrap_or_else(PoisonError::into_inner).take();
    let token = token.as_ref().map_or("-", TokenName::as_str).to_owned();
    tracing::info!(
        %method,
        path,
        status = response.status().as_u16(),
        millis = started.elapsed().as_millis() as u64,
        token,
        operator = state.operator,
        "API request"
    );
    response
}
