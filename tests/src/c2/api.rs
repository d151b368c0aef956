//! C2's HTTP API: routes, request parsing and the handlers.

use super::*;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    let client = post(new_client).patch(new_client_key).delete(remove_client).put(reset_client_topics);
    let empty_name = post(empty_client_name).patch(empty_client_name).delete(empty_client_name).put(empty_client_name);
    Router::new()
        .route("/e4/crypto-mode", get(crypto_mode))
        .route("/e4/health-check", get(health_check))
        // grpc-gateway binds an empty last segment to {name}; C2 then rejects the empty name.
        .route("/e4/client/", empty_name)
        .route("/e4/client/{name}", client)
        .route("/e4/clients", get(list_clients))
        .route("/e4/clients/count", get(count_clients))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(buffer_body))
        .layer(middleware::from_fn_with_state(Arc::clone(&shared), misbehave))
        .layer(middleware::from_fn_with_state(Arc::clone(&shared), record_request))
        .with_state(shared)
}

/// Outermost layer: logs every answer, routing errors and oversized bodies included.
async fn record_request(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let target = request.uri().path_and_query().map(ToString::to_string).unwrap_or_default();
    let decoded_path = percent_decode(request.uri().path());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    shared.requests().push(RequestRecord { method, target, decoded_path, status });
    response
}

/// Spoils the answer as the tests asked: before any handler runs, so nothing is stored.
async fn misbehave(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let misbehaviour = shared.controls().misbehaviour;
    match misbehaviour {
        None => next.run(request).await,
        Some(Misbehaviour::Stall(delay)) => {
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
        Some(Misbehaviour::Garbage) => (StatusCode::OK, &b"\x00\xffthis is not json <html>"[..]).into_response(),
        Some(Misbehaviour::HugeBody(len)) => {
            let mut body = br#"{"clients":[""#.to_vec();
            body.resize(len, b'a');
            (StatusCode::OK, [("content-type", "application/json")], body).into_response()
        }
    }
}

/// Reads the whole body up front, on every route and fallback, so the size limit holds everywhere.
async fn buffer_body(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    match read_bounded(body).await {
        Ok(bytes) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Err(error) => error.into_response(),
    }
}

async fn read_bounded(mut body: Body) -> Result<Bytes, GatewayError> {
    let mut buffered = Vec::new();
    let mut received = 0usize;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|error| GatewayError::invalid_argument(format!("unreadable body: {error}")))?;
        let Ok(data) = frame.into_data() else { continue };
        received = received.saturating_add(data.len());
        if received <= MAX_BODY_BYTES {
            buffered.extend_from_slice(&data);
        } else if received > MAX_BODY_BYTES + OVERSIZED_BODY_DRAIN_BYTES {
            break;
        }
    }
    if received > MAX_BODY_BYTES {
        return Err(GatewayError::body_too_large());
    }
    Ok(buffered.into())
}

async fn crypto_mode(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let mode = shared.controls().mode;
    Json(json!({ "CryptoMode": mode.gateway_name() }))
}

async fn health_check() -> Json<Value> {
    // int64 fields are JSON strings in grpc-gateway output.
    Json(json!({ "Code": "0", "Status": "OK" }))
}

/// `POST /e4/client/{name}`: C2's NewClient, an upsert.
async fn new_client(State(shared): State<Arc<Shared>>, name: Result<ClientName, Response>, body: Bytes) -> Response {
    let outcome = register_client(&shared, name, &body).await;
    let delay = shared.controls().post_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match outcome {
        Ok(()) => empty_message().into_response(),
        Err(response) => response,
    }
}

async fn register_client(shared: &Shared, name: Result<ClientName, Response>, body: &[u8]) -> Result<(), Response> {
    // Injected failures come first: they stand for C2 (or a proxy) failing before it looks.
    if let Some(failure) = shared.controls().take_post_failure() {
        return Err(failure.into_response());
    }
    let ClientName(name) = name?;
    if let Some(rejection) = shared.controls().rejected_clients.get(&name) {
        return Err(rejection.clone().into_response());
    }
    let request: NewClientRequest = parse_body(body).map_err(IntoResponse::into_response)?;
    let mode = shared.controls().mode;
    let key = decode_client_key(request.key.as_deref(), mode).map_err(IntoResponse::into_response)?;
    shared.store.upsert(&name, &key).await.map_err(|error| GatewayError::storage(error).into_response())
}

/// `PATCH /e4/client/{name}`: C2's NewClientKey, C2 rotating a key on its own.
async fn new_client_key(
    State(shared): State<Arc<Shared>>,
    ClientName(name): ClientName,
    body: Bytes,
) -> Result<Json<Value>, GatewayError> {
    let _: ClientRequest = parse_body(&body)?;
    if shared.store.replace_with_random_key(&name).await.map_err(GatewayError::storage)? {
        Ok(empty_message())
    } else {
        Err(GatewayError::client_not_found())
    }
}

/// `PUT /e4/client/{name}`: C2's ResetClientTopics. The test server keeps no topics, so this
/// only tells whether the client exists.
async fn reset_client_topics(
    State(shared): State<Arc<Shared>>,
    ClientName(name): ClientName,
    body: Bytes,
) -> Result<Json<Value>, GatewayError> {
    let _: ClientRequest = parse_body(&body)?;
    if shared.store.exists(&name).await.map_err(GatewayError::storage)? {
        Ok(empty_message())
    } else {
        Err(GatewayError::client_not_found())
    }
}

/// `DELETE /e4/client/{name}`: C2's RemoveClient.
async fn remove_client(
    State(shared): State<Arc<Shared>>,
    ClientName(name): ClientName,
) -> Result<Json<Value>, GatewayError> {
    if shared.store.remove(&name).await.map_err(GatewayError::storage)? {
        Ok(empty_message())
    } else {
        Err(GatewayError::client_not_found())
    }
}

async fn empty_client_name() -> GatewayError {
    GatewayError::empty_name()
}

/// `GET /e4/clients?offset=N&count=M`: one page of at most [`PAGE_CAP`] client names, in byte
/// order. The list is always present, empty included, as C2 writes it.
async fn list_clients(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Value>, GatewayError> {
    let Query(query) = query.map_err(|rejection| GatewayError::invalid_argument(rejection.body_text()))?;
    let (offset, count) = query.page()?;
    let added = shared.controls().take_client_to_add(offset);
    if let Some(name) = added {
        shared.store.upsert(&name, &[0x42; CLIENT_KEY_LEN]).await.map_err(GatewayError::storage)?;
    }
    let names = shared.store.names(offset, count.min(PAGE_CAP)).await.map_err(GatewayError::storage)?;
    let clients: Vec<Value> = names.into_iter().map(|name| json!({ "name": name })).collect();
    Ok(Json(json!({ "clients": clients })))
}

/// `GET /e4/clients/count`.
async fn count_clients(State(shared): State<Arc<Shared>>) -> Result<Json<Value>, GatewayError> {
    let count = shared.store.count().await.map_err(GatewayError::storage)?;
    Ok(Json(json!({ "count": count.to_string() })))
}

async fn route_not_found() -> RoutingError {
    RoutingError::NotFound
}

async fn method_not_allowed() -> RoutingError {
    RoutingError::MethodNotAllowed
}

/// The JSON of an empty protobuf message.
fn empty_message() -> Json<Value> {
    Json(json!({}))
}

/// A client name from the URL path, percent-decoded. grpc-gateway v1 matches routes on the
/// decoded path, so a name holding `/`, even sent as `%2F`, matches no route at all.
struct ClientName(String);

impl<S: Send + Sync> FromRequestParts<S> for ClientName {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let UrlPath(name) = UrlPath::<String>::from_request_parts(parts, state).await.map_err(|rejection| {
            GatewayError::invalid_argument(format!("invalid name: {}", rejection.body_text())).into_response()
        })?;
        if name.contains('/') {
            return Err(RoutingError::NotFound.into_response());
        }
        if name.is_empty() {
            return Err(GatewayError::empty_name().into_response());
        }
        Ok(ClientName(name))
    }
}

/// Body of NewClient. grpc-gateway fills `client.name` from the path over whatever the body
/// says, and grpc-gateway v1 ignores unknown fields (an `id` beside the key).
#[derive(Debug, Deserialize)]
struct NewClientRequest {
    #[serde(default)]
    pub(super) key: Option<String>,
}

/// Body of NewClientKey and ResetClientTopics: `{}` (or the path's client again).
#[derive(Debug, Deserialize)]
struct ClientRequest {}

/// Parses a JSON body; an empty body is the empty message, as grpc-gateway treats it.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, GatewayError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    serde_json::from_slice(body).map_err(|error| GatewayError::invalid_argument(format!("invalid body: {error}")))
}

/// Decodes and checks a client key as C2 does: standard, padded base64 of exactly 32 bytes,
/// not all zero.
fn decode_client_key(encoded: Option<&str>, mode: CryptoMode) -> Result<[u8; CLIENT_KEY_LEN], GatewayError> {
    let bytes = STANDARD
        .decode(encoded.unwrap_or_default())
        .map_err(|error| GatewayError::invalid_argument(format!("invalid key: {error}")))?;
    let what = match mode {
        CryptoMode::SymKey => "a symmetric key",
        CryptoMode::PubKey => "an Ed25519 public key",
    };
    let key: [u8; CLIENT_KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
        GatewayError::invalid_argument(format!("invalid key: {what} is {CLIENT_KEY_LEN} bytes, got {}", bytes.len()))
    })?;
    if key.iter().all(|byte| *byte == 0) {
        return Err(GatewayError::invalid_argument("invalid key: all zero"));
    }
    Ok(key)
}

/// Query of `GET /e4/clients`; int64 fields arrive as decimal strings.
#[derive(Debug, Deserialize)]
struct PageQuery {
    pub(super) offset: Option<String>,
    pub(super) count: Option<String>,
}

impl PageQuery {
    /// Offset and count as asked. proto3 cannot tell a count of 0 from none: both ask for an
    /// empty page. Negative numbers reach the database, which fails (500), as in C2.
    pub(super) fn page(&self) -> Result<(i64, i64), GatewayError> {
        let offset = parse_int64("offset", self.offset.as_deref())?.unwrap_or(0);
        let count = parse_int64("count", self.count.as_deref())?.unwrap_or(0);
        Ok((offset, count))
    }
}

fn parse_int64(field: &str, text: Option<&str>) -> Result<Option<i64>, GatewayError> {
    text.map(|text| {
        text.parse::<i64>().map_err(|_| GatewayError::invalid_argument(format!("{field}: {text:?} is not an int64")))
    })
    .transpose()
}

/// Decodes `%XX` escapes; anything else, malformed escapes included, is kept as it is.
fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = match bytes.get(index..index + 3) {
            Some([b'%', high, low]) => hex_value(*high).zip(hex_value(*low)).map(|(high, low)| high << 4 | low),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).and_then(|value| u8::try_from(value).ok())
}
