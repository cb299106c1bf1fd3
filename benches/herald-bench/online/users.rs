//! The online scenario's users: one task per user owns the user's one signed-in connection,
//! reads every frame on it as a watcher, and on command closes it and signs in again on a new
//! one. Each task keeps its own log (no lock per frame); the logs are checked at the end.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::{self, Message};

use super::hooks::{user_number, UserHooks};
use crate::clients::{self, connect_lean, hmac_hex, now_micros, Socket};
use crate::target::KEY;

/// What every user task shares.
pub struct Ctx {
    /// The nodes: a user's k-th connection goes to `ports[(i + k) % len]`, so on two nodes each
    /// reconnect moves the user to the other node.
    pub ports: Vec<u16>,
    pub users: usize,
    pub watch: usize,
    pub hooks: UserHooks,
    /// Per user, when its latest `pusher:signin` was sent (µs): where a watcher's latency starts.
    signed_at: Vec<AtomicU64>,
    /// Frames and latency count during the churn only, not during the setup's sign-ins.
    pub measuring: AtomicBool,
    /// Users signed in for the first time.
    pub ready: AtomicUsize,
    /// Reconnects done (signed in again).
    pub reconnected: AtomicU64,
    /// Users whose view was read by [`Command::Check`].
    pub checked: AtomicUsize,
    /// Setup handshakes at once (as the other scenarios open their sockets).
    setup_gate: Semaphore,
}

impl Ctx {
    pub fn new(ports: Vec<u16>, users: usize, watch: usize, hooks: UserHooks) -> Ctx {
        Ctx {
            ports,
            users,
            watch,
            hooks,
            signed_at: (0..users).map(|_| AtomicU64::new(0)).collect(),
            measuring: AtomicBool::new(false),
            ready: AtomicUsize::new(0),
            reconnected: AtomicU64::new(0),
            checked: AtomicUsize::new(0),
            setup_gate: Semaphore::new(200),
        }
    }

    /// When user `u`'s latest `pusher:signin` was sent (µs).
    pub fn signed_at(&self, u: usize) -> u64 {
        self.signed_at[u].load(Ordering::Relaxed)
    }

    /// Where user `u` sits in user `i`'s watchlist, if it does.
    fn position(&self, i: usize, u: usize) -> Option<usize> {
        let k = (u + self.users - i - 1) % self.users;
        (k < self.watch && u < self.users).then_some(k)
    }
}

/// User `i` watches the `watch` users after it, so every user is watched by as many.
pub fn watchlist(i: usize, users: usize, watch: usize) -> impl Iterator<Item = usize> {
    (1..=watch).map(move |k| (i + k) % users)
}

/// What the orchestrator asks of a user; a closed channel means: close and hand in the log.
pub enum Command {
    /// Close the connection, wait until the user is offline, sign in again on a new one.
    Reconnect,
    /// Note how many watched users the open connection's view has offline.
    Check,
}

/// One connection's life as a watcher.
pub struct SessionLog {
    /// When `pusher:signin_success` arrived (µs).
    pub success_at: u64,
    /// When the bench sent its close (µs).
    pub end_at: u64,
    /// Every watched user's change as it arrived: (user, online, µs).
    pub changes: Vec<(u32, bool, u64)>,
}

/// One reconnect of a user, as the bench made it (µs).
pub struct Reconnect {
    pub close_sent: u64,
    pub signin_sent: u64,
}

/// Everything one user's task saw.
#[derive(Default)]
pub struct UserLog {
    pub sessions: Vec<SessionLog>,
    pub reconnects: Vec<Reconnect>,
    /// When the last connection's close was sent (µs).
    pub finished_at: u64,
    /// Sign-in sent to this watcher's `online` frame, µs, during the churn.
    pub latencies: Vec<u64>,
    /// `pusher_internal:watchlist_events` frames received during the churn.
    pub frames: u64,
    /// Ids in watchlist frames that this user does not watch (or events of another name).
    pub strangers: u64,
    /// Watched users the view had offline at [`Command::Check`].
    pub wrong_at_end: u64,
    /// Reconnects that signed in again without the offline webhook within 5 s.
    pub unconfirmed: u64,
}

/// The open connection of a user.
struct Live {
    user: usize,
    ws: Socket,
    session: SessionLog,
    /// Whether each watched user is online, from the initial frame and every change.
    view: Vec<bool>,
    signin_sent: u64,
}

/// The signed `pusher:signin` data of user `i`, with its watchlist.
fn signin_data(ctx: &Ctx, i: usize, socket_id: &str) -> Value {
    let ids: Vec<String> = watchlist(i, ctx.users, ctx.watch)
        .map(|u| format!("u{u}"))
        .collect();
    let user_data = json!({"id": format!("u{i}"), "watchlist": ids}).to_string();
    let auth = hmac_hex(&format!("{socket_id}::user::{user_data}"));
    json!({"auth": format!("{KEY}:{auth}"), "user_data": user_data})
}

/// Connects user `i` for the `k`-th time and signs it in.
async fn sign_in(ctx: &Ctx, i: usize, k: usize) -> Result<Live, String> {
    let (mut ws, socket_id) = connect_lean(ctx.ports[(i + k) % ctx.ports.len()]).await?;
    let data = signin_data(ctx, i, &socket_id);
    let signin_sent = now_micros();
    ctx.signed_at[i].store(signin_sent, Ordering::Relaxed);
    clients::send(&mut ws, json!({"event": "pusher:signin", "data": data})).await?;
    loop {
        let frame = clients::next_json(&mut ws)
            .await
            .ok_or_else(|| format!("u{i}: closed while signing in"))?;
        match frame["event"].as_str() {
            Some("pusher:signin_success") => break,
            Some("pusher:error") => return Err(format!("u{i}: sign-in refused: {frame}")),
            _ => {}
        }
    }
    let session = SessionLog {
        success_at: now_micros(),
        end_at: u64::MAX,
        changes: Vec::new(),
    };
    Ok(Live {
        user: i,
        ws,
        session,
        view: vec![false; ctx.watch],
        signin_sent,
    })
}

impl Live {
    /// One message: a watchlist frame goes to the view and the log, a Pusher ping is answered;
    /// the server closing the connection is an error (the bench never asks it to).
    async fn take(
        &mut self,
        message: Option<Result<Message, tungstenite::Error>>,
        ctx: &Ctx,
        log: &mut UserLog,
    ) -> Result<(), String> {
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                return Err(format!("closed by the server: {frame:?}"))
            }
            Some(Err(error)) => return Err(format!("read failed: {error}")),
            None => return Err("closed by the server".into()),
            Some(Ok(_)) => return Ok(()),
        };
        if self.on_text(&text, ctx, log) {
            clients::send(&mut self.ws, json!({"event": "pusher:pong"})).await?;
        }
        Ok(())
    }

    /// Reads a text frame; true when it is a Pusher ping.
    fn on_text(&mut self, text: &str, ctx: &Ctx, log: &mut UserLog) -> bool {
        let frame: Value = serde_json::from_str(text).unwrap_or_default();
        match frame["event"].as_str() {
            Some("pusher_internal:watchlist_events") => {
                let data = frame["data"].as_str().unwrap_or("{}");
                self.on_watchlist(&serde_json::from_str(data).unwrap_or_default(), ctx, log);
                false
            }
            Some("pusher:ping") => true,
            _ => false,
        }
    }

    /// Applies a watchlist frame. A watched user's `online` counts as a latency sample only if
    /// its sign-in was sent after this connection's own: an earlier one is the initial status.
    fn on_watchlist(&mut self, data: &Value, ctx: &Ctx, log: &mut UserLog) {
        let now = now_micros();
        let measuring = ctx.measuring.load(Ordering::Relaxed);
        log.frames += u64::from(measuring);
        for event in data["events"].as_array().into_iter().flatten() {
            let online = match event["name"].as_str() {
                Some("online") => true,
                Some("offline") => false,
                _ => {
                    log.strangers += 1;
                    continue;
                }
            };
            for id in event["user_ids"].as_array().into_iter().flatten() {
                let user = id.as_str().and_then(user_number);
                let Some((u, k)) = user.and_then(|u| Some((u, ctx.position(self.user, u)?))) else {
                    log.strangers += 1;
                    continue;
                };
                self.view[k] = online;
                self.session.changes.push((u as u32, online, now));
                let signed = ctx.signed_at[u].load(Ordering::Relaxed);
                if online && measuring && signed > self.session.success_at {
                    log.latencies.push(now.saturating_sub(signed));
                }
            }
        }
    }

    /// Sends a WebSocket close and reads what still arrives until the server closes (5 s at
    /// most), so no frame pushed before the close is lost; returns when the close was sent.
    async fn close(mut self, ctx: &Ctx, log: &mut UserLog) -> u64 {
        let close_sent = now_micros();
        let _ = self.ws.close(None).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout_at(deadline.into(), self.ws.next()).await
        {
            if let Message::Text(text) = message {
                self.on_text(&text, ctx, log);
            }
        }
        self.session.end_at = close_sent;
        log.sessions.push(self.session);
        close_sent
    }
}

/// User `i`'s task: signs in (through the setup gate), then reads its connection and obeys
/// `commands` until the channel closes; then closes its connection and hands in its log.
pub async fn user_task(
    i: usize,
    ctx: std::sync::Arc<Ctx>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) -> Result<UserLog, String> {
    let mut log = UserLog::default();
    let mut live = {
        let _permit = ctx.setup_gate.acquire().await.map_err(|e| e.to_string())?;
        sign_in(&ctx, i, 0).await?
    };
    ctx.ready.fetch_add(1, Ordering::Relaxed);
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Reconnect) => live = reconnect(live, &ctx, &mut log).await?,
                Some(Command::Check) => {
                    log.wrong_at_end = live.view.iter().filter(|on| !**on).count() as u64;
                    ctx.checked.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    log.finished_at = live.close(&ctx, &mut log).await;
                    return Ok(log);
                }
            },
            message = live.ws.next() => live
                .take(message, &ctx, &mut log)
                .await
                .map_err(|e| format!("u{i}: {e}"))?,
        }
    }
}

/// Closes the user's connection and signs it in again on a new one (on two nodes, the other
/// node). The offline webhook must have arrived first: a new connection could otherwise
/// overtake the old one's close, and the user would rightly never go offline.
async fn reconnect(live: Live, ctx: &Ctx, log: &mut UserLog) -> Result<Live, String> {
    let i = live.user;
    let close_sent = live.close(ctx, log).await;
    let k = log.reconnects.len() + 1;
    let offline = |t: &super::hooks::UserTally| t.offline >= k as u64;
    if !ctx.hooks.wait(i, offline, Duration::from_secs(5)).await {
        log.unconfirmed += 1;
    }
    let next = sign_in(ctx, i, k).await?;
    log.reconnects.push(Reconnect {
        close_sent,
        signin_sent: next.signin_sent,
    });
    ctx.reconnected.fetch_add(1, Ordering::Relaxed);
    Ok(next)
}
