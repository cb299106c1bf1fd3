//! The connection task: handshake, the select loop over inbound frames, the outbound queue,
//! liveness and shutdown. Cleanup is the session's `Drop`, so it runs on every exit path.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use tokio::time::{sleep_until, timeout, Instant};

use super::liveness::{Due, Liveness};
use super::outbound::{Drained, OutboundQueue};
use super::session::{ConnectionSlot, Session};
use crate::apps::App;
use crate::protocol::codes::SocketError;
use crate::protocol::frames;
use crate::protocol::incoming::ClientMessage;
use crate::server::state::SharedState;

/// A close handshake gets this long; then the socket is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the upgrade request resolved to, before any frame is sent.
pub enum Handshake {
    /// A known app and an acceptable protocol.
    Accepted(Arc<App>),
    /// Refused: send the error and close with its code.
    Refused(SocketError),
}

/// How the loop ended.
enum Exit {
    /// Close the socket with this error (frame, then close code).
    Close(SocketError),
    /// Close with a plain WebSocket close code (1009: message too big).
    CloseCode(u16, &'static str),
    /// The peer stopped reading: writes made no progress for the pong timeout.
    Stalled,
    /// The peer went away or the socket broke: nothing left to send.
    Gone,
}

/// Serves one upgraded WebSocket until it closes.
pub async fn serve(mut ws: WebSocket, shared: SharedState, handshake: Handshake) {
    let app = match handshake {
        Handshake::Accepted(app) => app,
        Handshake::Refused(error) => return close(&mut ws, &error).await,
    };
    if !app.enabled {
        return close(&mut ws, &SocketError::AppDisabled).await;
    }
    let Some(slot) = ConnectionSlot::acquire(&app, &shared.metrics) else {
        return close(&mut ws, &SocketError::OverQuota).await;
    };
    let config = &shared.config;
    let signin_timeout = app
        .enable_user_authentication
        .then_some(config.user_authentication_timeout);
    let liveness = Liveness::new(
        Instant::now(),
        config.activity_timeout,
        config.pong_timeout,
        signin_timeout,
    );
    let outbound = OutboundQueue::new(config.outbound_buffer);
    let mut session = Session::new(app, shared.clone(), outbound, liveness, slot);
    session.send(frames::connection_established(
        session.socket_id,
        config.activity_timeout.as_secs(),
    ));

    let exit = run(&mut ws, &mut session).await;
    // Leave every channel before the close handshake, so a slow peer delays nobody's events.
    drop(session);
    match exit {
        Exit::Close(error) => {
            if error == SocketError::OverCapacity {
                shared.metrics.slow_consumer_disconnect();
            }
            close(&mut ws, &error).await
        }
        Exit::CloseCode(code, reason) => close_frame(&mut ws, code, reason).await,
        Exit::Stalled => shared.metrics.slow_consumer_disconnect(),
        Exit::Gone => {}
    }
}

async fn run(ws: &mut WebSocket, session: &mut Session) -> Exit {
    let shared = session.shared.clone();
    let outbound = session.outbound.clone();
    // A peer that reads nothing for this long is gone or hostile; its writes are abandoned.
    let stall = shared.config.pong_timeout;
    let mut pending = VecDeque::new();
    let timer = sleep_until(session.liveness.next_deadline());
    tokio::pin!(timer);
    loop {
        // No `biased`: a busy outbound queue must not starve inbound frames or the timer.
        tokio::select! {
            _ = shared.shutdown.cancelled() => return Exit::Close(SocketError::ServerShutdown),
            _ = outbound.ready() => {
                let write = write_queued(ws, &outbound, &mut pending);
                tokio::select! {
                    written = timeout(stall, write) => match written {
                        Ok(None) => {}
                        Ok(Some(exit)) => return exit,
                        Err(_) => return Exit::Stalled,
                    },
                    _ = shared.shutdown.cancelled() => return Exit::Gone,
                }
            }
            inbound = ws.recv() => {
                session.liveness.seen(Instant::now());
                match inbound {
                    Some(Ok(Message::Text(text))) => {
                        shared.metrics.message_in();
                        match ClientMessage::parse(text.as_str()) {
                            Ok(message) => session.handle(message),
                            Err(error) => session.send(frames::error(&error)),
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        let error = SocketError::MalformedMessage("binary frames are not supported; send JSON text".into());
                        session.send(frames::error(&error));
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => return Exit::Gone,
                    Some(Err(error)) => return read_error(error),
                }
            }
            _ = &mut timer => {
                match session.liveness.due(Instant::now()) {
                    Due::Nothing => {}
                    Due::Ping => match timeout(stall, ws.send(Message::Ping(Default::default()))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return Exit::Gone,
                        Err(_) => return Exit::Stalled,
                    },
                    Due::PongTimeout => return Exit::Close(SocketError::PongTimeout),
                    Due::SigninTimeout => {
                        return Exit::Close(SocketError::Unauthorized("not signed in within the timeout".into()))
                    }
                }
                timer.as_mut().reset(session.liveness.next_deadline());
            }
        }
    }
}

/// Writes what is queued now with one flush; `Some` when the connection must end.
///
/// One drain per call: frames queued meanwhile wake the loop again, after inbound frames and
/// timers had their turn.
async fn write_queued(
    ws: &mut WebSocket,
    outbound: &OutboundQueue,
    pending: &mut VecDeque<Utf8Bytes>,
) -> Option<Exit> {
    match outbound.drain(pending) {
        Drained::Close(error) => Some(Exit::Close(error)),
        Drained::Frames if pending.is_empty() => None,
        Drained::Frames => {
            for frame in pending.drain(..) {
                if ws.feed(Message::Text(frame)).await.is_err() {
                    return Some(Exit::Gone);
                }
            }
            if ws.flush().await.is_err() {
                return Some(Exit::Gone);
            }
            // Frames or a close queued meanwhile get the next turn of the loop.
            outbound.rearm();
            None
        }
    }
}

fn read_error(error: axum::Error) -> Exit {
    let inner = error.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => Exit::CloseCode(1009, "Message too big"),
        _ => Exit::Gone,
    }
}

/// Sends `pusher:error`, then closes with the error's code when it is fatal; bounded in time.
async fn close(ws: &mut WebSocket, error: &SocketError) {
    let frame = Message::Text(frames::error(error).into());
    if let Ok(Ok(())) = timeout(CLOSE_TIMEOUT, ws.send(frame)).await {
        if let Some(code) = error.close_code() {
            close_frame(ws, code, &error.to_string()).await;
        }
    }
}

async fn close_frame(ws: &mut WebSocket, code: u16, reason: &str) {
    // A close reason is limited to 123 bytes by the WebSocket framing.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from(&reason[..end]),
    };
    let _ = timeout(CLOSE_TIMEOUT, ws.send(Message::Close(Some(frame)))).await;
}
