//! The connection task: the select loop over inbound frames, the outbound queue, liveness and
//! shutdown. Cleanup is the session's `Drop`, so it runs on every exit path.
//!
//! The socket is read through tungstenite's sans-IO [`WebSocketContext`] (frame parsing,
//! unmasking, limits, automatic pong and close replies); every write goes through the
//! connection's [`OutboundQueue`], which writes frames straight to the socket when it can.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, timeout_at, Instant};
use tokio_util::sync::WaitForCancellationFutureOwned;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::Message;

use super::decision::{ConnectionInfo, Wait};
use super::inflate::InflatingReader;
use super::liveness::{Due, Liveness};
use super::session::{ConnectionSlot, Session};
use crate::apps::App;
use crate::cluster::Refusal;
use crate::hooks::Verdict;
use crate::outbound::{Flushed, Link, Outbound, OutboundQueue, WireFrame};
use crate::protocol::codes::SocketError;
use crate::protocol::deflate::InflateError;
use crate::protocol::frames;
use crate::protocol::incoming::ClientMessage;
use crate::state::SharedState;

/// A close handshake gets this long; then the socket is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Read buffer per socket: small, because idle sockets dominate memory (DECISIONS.md).
const READ_BUFFER: usize = 2048;

/// Messages handled per wake-up, so one chatty client cannot hold a worker thread.
const MESSAGES_PER_WAKE: usize = 64;

/// What the upgrade request resolved to, before any frame is sent.
pub enum Handshake {
    /// A known app and an acceptable protocol; what the request told, when the app's
    /// `connection_starting` hook wants it; whether `permessage-deflate` was negotiated.
    Accepted(Arc<App>, Option<Box<ConnectionInfo>>, bool),
    /// Refused: send the error and close with its code.
    Refused(SocketError),
}

/// How the loop ended.
enum Exit {
    /// Close the socket with this error (frame, then close code).
    Close(SocketError),
    /// Close with a plain WebSocket close code (1009: message too big).
    CloseCode(u16, &'static str),
    /// The peer sent a close frame: answer it (with its code, when it may be echoed) and end.
    ClosedByPeer(Option<u16>),
    /// The peer stopped reading: writes made no progress for the pong timeout.
    Stalled,
    /// The peer went away or the socket broke: nothing left to send.
    Gone,
}

impl Exit {
    /// The close code and who closed, for the console's journal.
    fn code(&self) -> (Option<u16>, &'static str) {
        match self {
            Exit::Close(error) => (error.close_code(), "server"),
            Exit::CloseCode(code, _) => (Some(*code), "server"),
            Exit::ClosedByPeer(code) => (*code, "client"),
            Exit::Stalled => (None, "server (stalled)"),
            Exit::Gone => (None, "client (gone)"),
        }
    }
}

/// Serves one upgraded WebSocket (through `link`: plain or TLS) until it closes; `read_ahead`
/// is what arrived with the upgrade.
pub async fn serve(
    socket: TcpStream,
    link: Link,
    read_ahead: Bytes,
    shared: SharedState,
    handshake: Handshake,
) {
    let deflate = matches!(handshake, Handshake::Accepted(_, _, true));
    let outbound = OutboundQueue::new(socket, link, shared.config().outbound, deflate);
    let (app, info) = match handshake {
        Handshake::Accepted(app, info, _) => (app, info),
        Handshake::Refused(error) => return finish(&outbound, &closing_frames(&error)).await,
    };
    if !app.enabled {
        return finish(&outbound, &closing_frames(&SocketError::AppDisabled)).await;
    }
    let slot = match ConnectionSlot::acquire(&app, &shared).await {
        Ok(slot) => slot,
        Err(refusal) => return finish(&outbound, &closing_frames(&refusal)).await,
    };
    let config = shared.config();
    let signin_timeout = app
        .enable_user_authentication
        .then_some(config.user_authentication_timeout);
    let liveness = Liveness::new(
        Instant::now(),
        config.activity_timeout,
        config.pong_timeout,
        signin_timeout,
    );
    let mut reader = FrameReader::new(config.websocket_max_payload, &read_ahead, deflate);
    // It may pin hyper's whole request buffer: let it go now, not when the connection ends.
    drop(read_ahead);
    let mut session = Session::new(app, shared.clone(), outbound.clone(), liveness, slot);
    if let Some(info) = &info {
        session.address = info.address;
        session.journal_opened(info);
    }
    // With a `connection_starting` hook, the handshake waits for the app's backend.
    let first = info.and_then(|info| session.connection_call(&info));
    if first.is_none() {
        session.send(frames::connection_established(
            session.socket_id,
            config.activity_timeout.as_secs(),
        ));
    }

    let exit = run(&mut reader, &mut session, first).await;
    session.journal_closed(exit.code());
    // Leave every channel before the close handshake, so a slow peer delays nobody's events.
    drop(session);
    close(exit, &outbound, &shared).await;
}

/// Ends the connection the way `exit` asks, after it has left its channels.
async fn close(exit: Exit, outbound: &Outbound, shared: &SharedState) {
    match exit {
        Exit::Close(SocketError::OverCapacity) => {
            // It has left its channels and is counted as gone already. What it was sent is
            // dropped; the 4100 close waits (up to pong_timeout, or until shutdown) for the peer
            // to read again, so a client that was only slow learns why it must back off.
            shared.metrics().slow_consumer_disconnect();
            let frames = closing_frames(&SocketError::OverCapacity);
            let linger = shared.config().pong_timeout;
            tokio::select! {
                _ = finish_within(outbound, &frames, linger) => {}
                _ = shared.shutdown().cancelled() => outbound.shut(&[]),
            }
        }
        Exit::Close(error) => finish(outbound, &closing_frames(&error)).await,
        Exit::CloseCode(code, reason) => finish(outbound, &[WireFrame::close(code, reason)]).await,
        Exit::ClosedByPeer(code) => finish(outbound, &[WireFrame::close_reply(code)]).await,
        Exit::Stalled => {
            shared.metrics().slow_consumer_disconnect();
            outbound.shut(&[]);
        }
        Exit::Gone => outbound.shut(&[]),
    }
}

/// The WebSocket limits every connection reads with.
pub(crate) fn websocket_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

async fn run(reader: &mut FrameReader, session: &mut Session, first: Option<Wait>) -> Exit {
    let shared = session.shared.clone();
    let outbound = session.outbound.clone();
    // A peer that reads nothing for this long is gone or hostile; its writes are abandoned.
    let stall = shared.config().pong_timeout;
    // Registered once: a fresh `cancelled()` per turn would lock the token's shared waiter list.
    // The app's token: cancelled at shutdown, and when a reload removes or disables the app.
    let shutdown = shared.cluster().closing(&session.app).cancelled_owned();
    tokio::pin!(shutdown);
    // Removed or disabled between the handshake and this token: its closing went before.
    if let Err(error) = session.refresh_app() {
        return Exit::Close(error);
    }
    let timer = sleep_until(session.liveness.next_deadline());
    tokio::pin!(timer);
    // Frames that came with the upgrade request are already buffered: no readiness will say so.
    let mut reading = Reading {
        waiting: first,
        ..Reading::default()
    };
    if let Err(exit) = read_on(reader, session, &mut reading, &mut timer) {
        return exit;
    }
    loop {
        let waiting = reading.waiting.is_some();
        // While the socket waits, its frames queue up to a bound (then TCP holds the rest):
        // reading on is how a close from the peer is seen and cancels a hook call.
        let room = reading.has_room();
        let unread = reading.unread && room;
        // No `biased`: a busy outbound queue must not starve inbound frames or the timer.
        tokio::select! {
            _ = &mut shutdown => return closing_exit(&shared),
            _ = outbound.ready() => {
                if let Some(exit) = write_queued(&outbound, stall, shutdown.as_mut()).await {
                    return exit;
                }
            }
            readable = outbound.socket().readable(), if room => {
                if readable.is_err() {
                    return Exit::Gone;
                }
                if let Err(exit) = read_on(reader, session, &mut reading, &mut timer) {
                    return exit;
                }
            }
            // Complete messages still buffered after a full turn: no readiness will announce
            // them (the socket may be drained), so come back after the other branches had a go.
            _ = tokio::task::yield_now(), if unread => {
                if let Err(exit) = read_on(reader, session, &mut reading, &mut timer) {
                    return exit;
                }
            }
            // A step carried out by another thread, or the app's backend deciding: the next
            // frame waits, so nothing of this socket's overtakes it.
            ended = Reading::ended(&mut reading.waiting), if waiting => {
                if let Err(error) = reading.resume(session, ended) {
                    return Exit::Close(error);
                }
            }
            _ = &mut timer => {
                if let Some(exit) = liveness_due(session, &outbound) {
                    return exit;
                }
                timer.as_mut().reset(session.liveness.next_deadline());
            }
        }
    }
}

/// Reads what arrived (see [`read_messages`]), then rearms the liveness timer for it.
fn read_on(
    reader: &mut FrameReader,
    session: &mut Session,
    reading: &mut Reading,
    timer: &mut std::pin::Pin<&mut tokio::time::Sleep>,
) -> Result<(), Exit> {
    read_messages(reader, session, reading)?;
    rearm(timer, &session.liveness);
    Ok(())
}

/// Brings the timer forward when what was read moved the next deadline earlier: an answer to
/// a ping ends the wait for `pong_timeout`, and the next ping is due `activity_timeout` after
/// it (which may be sooner). Later deadlines are left to `Liveness::due`, so the timer is not
/// reset on every frame.
fn rearm(timer: &mut std::pin::Pin<&mut tokio::time::Sleep>, liveness: &Liveness) {
    let next = liveness.next_deadline();
    if next < timer.deadline() {
        timer.as_mut().reset(next);
    }
}

/// Frames a waiting socket reads ahead before it stops reading.
const INBOX_LIMIT: usize = 16;
/// Bytes of frames a waiting socket reads ahead before it stops reading (with the frame that
/// crossed it, at most `websocket_max_payload_kb` more): the rest waits in TCP, costing the
/// server nothing, however many sockets wait on a slow hook.
const INBOX_BYTES: usize = 16 * 1024;

/// A frame as read: a message, or the error to answer it with.
type Inbound = Result<ClientMessage, SocketError>;

/// Where reading stands between turns of the loop.
#[derive(Default)]
struct Reading {
    /// Complete messages may still be buffered.
    unread: bool,
    /// What the socket waits for; nothing more is handled until it ends.
    waiting: Option<Wait>,
    /// Frames read while waiting (with their bytes), handled in order once it ends.
    inbox: VecDeque<(Inbound, usize)>,
    /// The bytes of the frames in `inbox`, as they arrived.
    inbox_bytes: usize,
}

/// How a wait ended.
enum Ended {
    /// The line carried the step out, or refused a subscription after the socket asked.
    Line(Option<Refusal>),
    /// The app's backend answered (or failed to).
    Decision(Verdict),
}

impl Reading {
    /// Polls the wait in place: the loop's other branches may win a turn, and the wait must
    /// survive that (dropping a hook call cancels it).
    async fn ended(waiting: &mut Option<Wait>) -> Ended {
        match waiting {
            Some(Wait::Line(pending)) => Ended::Line(pending.done().await),
            Some(Wait::Decision(call, _)) => Ended::Decision(call.as_mut().await),
            None => std::future::pending().await,
        }
    }

    /// Whether a waiting socket may read ahead another frame.
    fn has_room(&self) -> bool {
        self.inbox.len() < INBOX_LIMIT && self.inbox_bytes < INBOX_BYTES
    }

    /// Handles a frame (`bytes` long as it arrived) now, or queues it behind the wait.
    fn take(&mut self, session: &mut Session, inbound: Inbound, bytes: usize) {
        if self.waiting.is_some() {
            self.inbox_bytes += bytes;
            return self.inbox.push_back((inbound, bytes));
        }
        self.waiting = handle(session, inbound);
    }

    /// Applies how the wait ended, then handles queued frames until the next wait; `Err` when
    /// the connection must close.
    fn resume(&mut self, session: &mut Session, ended: Ended) -> Result<(), SocketError> {
        let wait = self.waiting.take();
        match (ended, wait) {
            (Ended::Line(Some(refusal)), _) => session.refused(refusal),
            (Ended::Decision(verdict), Some(Wait::Decision(_, then))) => {
                self.waiting = session.decided(verdict, then)?
            }
            _ => {}
        }
        while self.waiting.is_none() {
            let Some((inbound, bytes)) = self.inbox.pop_front() else {
                // Most sockets never wait again: give the queue's memory back.
                self.inbox = VecDeque::new();
                break;
            };
            self.inbox_bytes -= bytes;
            self.waiting = handle(session, inbound);
        }
        Ok(())
    }
}

fn handle(session: &mut Session, inbound: Inbound) -> Option<Wait> {
    match inbound {
        Ok(message) => session.handle(message),
        Err(error) => {
            session.send(frames::error(&error));
            None
        }
    }
}

/// Why the socket's closing token was cancelled: the server shuts down (4200), or a reload
/// removed or disabled its app (4003).
fn closing_exit(shared: &SharedState) -> Exit {
    Exit::Close(match shared.shutdown().is_cancelled() {
        true => SocketError::ServerShutdown,
        false => SocketError::AppDisabled,
    })
}

/// What the liveness timer asks for now: a ping (sent here), or the end of the connection.
fn liveness_due(session: &mut Session, outbound: &Outbound) -> Option<Exit> {
    match session.liveness.due(Instant::now()) {
        Due::Nothing => None,
        Due::Ping => {
            outbound.push(&WireFrame::ping());
            None
        }
        Due::PongTimeout => Some(Exit::Close(SocketError::PongTimeout)),
        Due::SigninTimeout => Some(Exit::Close(SocketError::Unauthorized(
            "not signed in within the timeout".into(),
        ))),
    }
}

/// Reads the messages that arrived, in order, handling each (or queueing it while the socket
/// waits) until the socket is drained, the per-wake limit is reached or the inbox is full;
/// `Err` when the connection ends.
fn read_messages(
    reader: &mut FrameReader,
    session: &mut Session,
    reading: &mut Reading,
) -> Result<(), Exit> {
    let outbound = session.outbound.clone();
    reading.unread = true;
    for _ in 0..MESSAGES_PER_WAKE {
        if !reading.has_room() {
            return Ok(());
        }
        let message = match reader.read(&outbound) {
            Ok(message) => message,
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                reading.unread = false;
                return Ok(());
            }
            Err(error) => return Err(read_error(error)),
        };
        session.liveness.seen(Instant::now());
        session.refresh_app().map_err(Exit::Close)?;
        let bytes = message.len();
        let inbound = match message {
            Message::Text(text) => {
                session.slot.metrics().message_in();
                match session.count_message() {
                    Ok(()) => ClientMessage::parse(text.as_str()),
                    Err(error) if error.close_code().is_some() => return Err(Exit::Close(error)),
                    Err(dropped) => Err(dropped),
                }
            }
            Message::Binary(_) => Err(SocketError::MalformedMessage(
                "binary frames are not supported; send JSON text".into(),
            )),
            Message::Close(frame) => {
                // Answered by `finish`, after anything queued and before anything else is sent.
                let code = frame.map(|f| f.code).filter(|c| c.is_allowed());
                return Err(Exit::ClosedByPeer(code.map(u16::from)));
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        reading.take(session, inbound, bytes);
    }
    Ok(())
}

/// How a read error ends the connection (RFC 6455 section 7.4.1 codes where one applies).
fn read_error(error: tungstenite::Error) -> Exit {
    use tungstenite::error::ProtocolError;
    let inflate = match &error {
        tungstenite::Error::Io(e) => e.get_ref().and_then(|e| e.downcast_ref::<InflateError>()),
        _ => None,
    };
    match inflate {
        Some(InflateError::TooBig) => return Exit::CloseCode(1009, "Message too big"),
        Some(InflateError::Corrupt) => return Exit::CloseCode(1007, "Invalid compressed data"),
        Some(InflateError::Misplaced) => return Exit::CloseCode(1002, "Protocol error"),
        Some(InflateError::TooFast) => {
            return Exit::CloseCode(1008, "Compressed messages inflate too fast")
        }
        None => {}
    }
    match error {
        tungstenite::Error::Capacity(_) => Exit::CloseCode(1009, "Message too big"),
        tungstenite::Error::Utf8(_) => Exit::CloseCode(1007, "Invalid UTF-8 in a text message"),
        // The peer hung up without a close frame: nobody is left to tell.
        tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Exit::Gone,
        tungstenite::Error::Protocol(_) => Exit::CloseCode(1002, "Protocol error"),
        _ => Exit::Gone,
    }
}

/// Writes what is queued; `Some` when the connection must end.
async fn write_queued(
    outbound: &OutboundQueue,
    stall: Duration,
    mut shutdown: std::pin::Pin<&mut WaitForCancellationFutureOwned>,
) -> Option<Exit> {
    let mut stalled_at = Instant::now() + stall;
    loop {
        match outbound.flush() {
            Flushed::Idle => return None,
            Flushed::Close(error) => return Some(Exit::Close(error)),
            Flushed::Broken => return Some(Exit::Gone),
            Flushed::Blocked => {}
        }
        // Woken by the queue too: a producer that overflowed it must not wait for the stall
        // timeout to see this socket leave its channels.
        tokio::select! {
            writable = timeout_at(stalled_at, outbound.socket().writable()) => match writable {
                Ok(Ok(())) => stalled_at = Instant::now() + stall,
                Ok(Err(_)) => return Some(Exit::Gone),
                Err(_) => return Some(Exit::Stalled),
            },
            _ = outbound.ready() => {}
            _ = &mut shutdown => return Some(Exit::Gone),
        }
    }
}

/// `pusher:error`, then a close frame with the error's code when it is fatal.
fn closing_frames(error: &SocketError) -> Vec<WireFrame> {
    let mut last = vec![WireFrame::text(&frames::error(error))];
    if let Some(code) = error.close_code() {
        last.push(WireFrame::close(code, &error.to_string()));
    }
    last
}

/// Writes the connection's last frames after everything queued, bounded in time.
async fn finish(outbound: &Outbound, last: &[WireFrame]) {
    finish_within(outbound, last, CLOSE_TIMEOUT).await
}

async fn finish_within(outbound: &Outbound, last: &[WireFrame], bound: Duration) {
    outbound.shut(last);
    let _ = timeout(bound, async {
        while outbound.flush() == Flushed::Blocked {
            if outbound.socket().writable().await.is_err() {
                return;
            }
        }
    })
    .await;
}

/// A connection's inbound frames: tungstenite's sans-IO reader, behind the inflating reader
/// when the socket negotiated `permessage-deflate`.
struct FrameReader {
    context: WebSocketContext,
    /// Whether `permessage-deflate` was negotiated, and the largest message.
    deflate: Option<usize>,
    /// Kept only while a frame is under way: an idle socket holds none.
    inflating: Option<Box<InflatingReader>>,
}

impl FrameReader {
    /// A reader of messages up to `max_message` bytes; `read_ahead` came with the upgrade.
    fn new(max_message: usize, read_ahead: &[u8], deflate: bool) -> FrameReader {
        let websocket = Some(websocket_config(max_message));
        let (context, inflating) = match (deflate, read_ahead.is_empty()) {
            (_, true) => (WebSocketContext::new(Role::Server, websocket), None),
            // What came with the upgrade may be compressed: it goes through the inflater.
            (true, false) => (
                WebSocketContext::new(Role::Server, websocket),
                Some(Box::new(InflatingReader::new(max_message, read_ahead))),
            ),
            (false, false) => (
                WebSocketContext::from_partially_read(read_ahead.to_vec(), Role::Server, websocket),
                None,
            ),
        };
        FrameReader {
            context,
            deflate: deflate.then_some(max_message),
            inflating,
        }
    }

    /// The next message, as tungstenite reads it.
    fn read(&mut self, outbound: &OutboundQueue) -> Result<Message, tungstenite::Error> {
        let Some(limit) = self.deflate else {
            return self.context.read(&mut SocketIo {
                outbound,
                inflating: None,
            });
        };
        let inflating = self
            .inflating
            .get_or_insert_with(|| Box::new(InflatingReader::new(limit, &[])));
        let read = self.context.read(&mut SocketIo {
            outbound,
            inflating: Some(&mut **inflating),
        });
        // Dropped only once the socket is drained: not an allocation per message.
        let drained = matches!(&read, Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock);
        if drained && self.inflating.as_ref().is_some_and(|r| r.may_drop()) {
            self.inflating = None;
        }
        read
    }
}

/// The socket as tungstenite sees it: reads come from the socket (through the inflater when
/// there is one); its automatic replies (pong, close echo) go through the outbound queue, in
/// order with every other frame.
struct SocketIo<'a> {
    outbound: &'a OutboundQueue,
    inflating: Option<&'a mut InflatingReader>,
}

/// The socket's reads, for the inflater.
struct QueueReads<'a>(&'a OutboundQueue);

impl Read for QueueReads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Read for SocketIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inflating {
            Some(inflating) => inflating.read(&mut QueueReads(self.outbound), buf),
            None => self.outbound.read(buf),
        }
    }
}

impl Write for SocketIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A reply refused because the connection is closing is not worth an error.
        self.outbound.push(&WireFrame::framed(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
