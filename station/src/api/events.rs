//! `GET /v1/events`: the line's events as server-sent events, each `data:` one JSON object of
//! the schema `keyfill.line.v1` that `keyfill line` writes (docs/line.md), its `id:` the event's
//! id. A client too slow to keep up is told how many events it missed (`event: lagged`); the
//! devices' records in the database are complete regardless. The stream ends when the server
//! stops.

use super::Shared;
use super::auth::Caller;
use super::error::{ApiError, Problem};
use super::token::Scope;
use crate::custody::Operation;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use std::convert::Infallible;
use std::time::Duration;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::{BroadcastStream, WatchStream};
use tokio_stream::{Stream, StreamExt};

/// Events kept for a slow client before it misses some.
pub const BACKLOG: usize = 1_024;

/// An event as the stream sends it.
#[derive(Debug)]
pub struct StreamedEvent {
    pub id: String,
    pub json: String,
}

#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    security(("bearer" = ["events:read"])),
    responses(
        (status = 200, description = "Server-sent events, each data line one keyfill.line.v1 event", content_type = "text/event-stream", body = String),
        (status = 401, description = "No valid token", body = Problem),
        (status = 403, description = "The token lacks events:read", body = Problem),
    )
)]
pub async fn stream(
    caller: Caller,
    State(state): State<Shared>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.may(&state, Scope::EventsRead, Operation::Inspect)?;
    // The stream ends when the server stops: `None` from the stop channel closes it.
    let stop = WatchStream::new(state.stopping.clone()).filter(Option::is_some).map(|_| None);
    let events = BroadcastStream::new(state.events.subscribe())
        .map(Some)
        .merge(stop)
        .take_while(Option::is_some)
        .filter_map(|received| received)
        .map(|received| {
            Ok(match received {
                Ok(streamed) => Event::default().id(&streamed.id).data(&streamed.json),
                Err(BroadcastStreamRecvError::Lagged(missed)) => {
                    Event::default().event("lagged").data(missed.to_string())
                }
            })
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
