//! Errors, as grpc-gateway writes them.

use super::*;

/// The gRPC status codes this server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GrpcCode {
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

impl GrpcCode {
    /// grpc-gateway's HTTPStatusFromCode.
    pub(super) fn http_status(self) -> StatusCode {
        match self {
            GrpcCode::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            GrpcCode::Unknown | GrpcCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            GrpcCode::InvalidArgument => StatusCode::BAD_REQUEST,
            GrpcCode::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            GrpcCode::NotFound => StatusCode::NOT_FOUND,
            GrpcCode::AlreadyExists => StatusCode::CONFLICT,
            GrpcCode::PermissionDenied => StatusCode::FORBIDDEN,
            GrpcCode::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            GrpcCode::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            GrpcCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            GrpcCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        }
    }

    /// The code grpc-gateway would have mapped to `status`, for injected failures.
    fn for_http_status(status: StatusCode) -> Self {
        match status.as_u16() {
            400 => GrpcCode::InvalidArgument,
            401 => GrpcCode::Unauthenticated,
            403 => GrpcCode::PermissionDenied,
            404 => GrpcCode::NotFound,
            409 => GrpcCode::AlreadyExists,
            429 => GrpcCode::ResourceExhausted,
            499 => GrpcCode::Cancelled,
            501 => GrpcCode::Unimplemented,
            503 => GrpcCode::Unavailable,
            504 => GrpcCode::DeadlineExceeded,
            500 => GrpcCode::Internal,
            _ => GrpcCode::Unknown,
        }
    }
}

/// An error answer as grpc-gateway v1 writes it, `{"error":msg,"code":<grpc code>,"message":msg,
/// "details":[]}`, with an HTTP status.
#[derive(Debug, Clone)]
pub(super) struct GatewayError {
    pub(super) status: StatusCode,
    pub(super) code: GrpcCode,
    pub(super) message: String,
}

impl GatewayError {
    pub(super) fn new(code: GrpcCode, message: impl Into<String>) -> Self {
        GatewayError { status: code.http_status(), code, message: message.into() }
    }

    pub(super) fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(GrpcCode::InvalidArgument, message)
    }

    pub(super) fn empty_name() -> Self {
        Self::invalid_argument("invalid name: a client name cannot be empty")
    }

    pub(super) fn client_not_found() -> Self {
        Self::new(GrpcCode::NotFound, "client not found")
    }

    pub(super) fn internal(message: impl Into<String>) -> Self {
        Self::new(GrpcCode::Internal, message)
    }

    pub(super) fn storage(error: anyhow::Error) -> Self {
        // Query errors name statements, never bound values, so no key can leak through here.
        eprintln!("C2 test server: storage error: {error:#}");
        Self::internal(format!("storage error: {error}"))
    }

    pub(super) fn body_too_large() -> Self {
        // grpc-gateway has no limit of its own; 413 is what a fronting proxy would answer.
        GatewayError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: GrpcCode::ResourceExhausted,
            message: format!("request body larger than {MAX_BODY_BYTES} bytes"),
        }
    }

    pub(super) fn injected(status: StatusCode, message: &str) -> Self {
        GatewayError { status, code: GrpcCode::for_http_status(status), message: message.to_owned() }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.message, "code": self.code as i32, "message": self.message, "details": [] });
        (self.status, Json(body)).into_response()
    }
}

/// What grpc-gateway v1's mux answers before any handler runs: a path no route matches (a
/// client name holding `/` included) or a method the path does not take, as Go's `http.Error`
/// writes it, in plain text.
#[derive(Debug, Clone, Copy)]
pub(super) enum RoutingError {
    NotFound,
    MethodNotAllowed,
}

impl IntoResponse for RoutingError {
    fn into_response(self) -> Response {
        let status = match self {
            RoutingError::NotFound => StatusCode::NOT_FOUND,
            RoutingError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        };
        let text = format!("{}\n", status.canonical_reason().unwrap_or_default());
        let headers = [(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")];
        (status, headers, text).into_response()
    }
}
