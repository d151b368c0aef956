//! Every error the API answers with: a status and one JSON shape, [`Problem`], naming the cause
//! and what to do. Rejections of malformed requests (a bad query, body or path) take the same
//! shape through the extractors here.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyfill_formats::printable;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An error answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A stable code for programs: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `conflict`, `too_large`, `busy`, `unavailable`.
    pub error: String,
    /// What went wrong, for a person.
    pub message: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub problem: Problem,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>, advice: Option<&str>) -> ApiError {
        // Messages may quote what the client sent, raw: escaped here, once.
        let message = printable(&message.into()).into_owned();
        ApiError { status, problem: Problem { error: code.to_owned(), message, advice: advice.map(str::to_owned) } }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message, None)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            message,
            Some("send `Authorization: Bearer kf_…` with a token from `keyfill api token create`"),
        )
    }

    pub fn forbidden(message: impl Into<String>, advice: &str) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message, Some(advice))
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message, None)
    }

    pub fn conflict(message: impl Into<String>, advice: &str) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message, Some(advice))
    }

    pub fn too_large() -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than the API takes ({} MiB)", super::MAX_BODY_BYTES / (1024 * 1024)),
            Some("split the file, or import it with `keyfill orders import` at the station"),
        )
    }

    pub fn busy(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", message, Some("try again when a job has finished"))
    }

    /// The station's own trouble (its database): not the client's.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            message,
            Some("the station's log names the cause (`keyfill doctor` checks the database); try again"),
        )
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(error: crate::db::DbError) -> Self {
        tracing::error!(%error, "API request failed on the database");
        ApiError::unavailable(format!("the station's database failed: {error}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let mut response = (self.status, Json(self.problem)).into_response();
        if unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"keyfill\""));
        }
        response
    }
}

/// A JSON body, its rejection a [`Problem`].
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(ApiError::bad_request("the body must be JSON: send `Content-Type: application/json`"))
            }
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::too_large()),
            Err(rejection) => Err(ApiError::bad_request(format!(
                "the JSON body is not one this endpoint takes: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// A body's bytes, its rejection (too large, cut off) a [`Problem`].
#[derive(Debug)]
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::body::Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(RawBody(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::too_large()),
            Err(rejection) => Err(ApiError::bad_request(format!("cannot read the body: {}", rejection.body_text()))),
        }
    }
}

/// A query string, its rejection a [`Problem`].
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection: QueryRejection| ApiError::bad_request(format!("bad query: {}", rejection.body_text())))
    }
}

/// Path parameters, their rejection a [`Problem`].
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection: PathRejection| ApiError::bad_request(format!("bad path: {}", rejection.body_text())))
    }
}
