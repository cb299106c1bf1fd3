//! The Lua of [`super::channel_state`]: every change of the cluster-wide channel state, each
//! one atomic, returning the transition it made and appending its webhook events.
//!
//! Keys of a channel: `{prefix}:{pN}:ch:{app}:{channel}:` + `sockets` (socket id → incarnation
//! `|` user id), `users` (user id → socket count), `infos` (user id → `user_info`), `flags`
//! (`occupied`: its `channel_occupied` was emitted; `version`: member notices published so far).
//! Of a partition: `owned:{incarnation}` (the
//! sockets an incarnation added), `pending` (held vacates and removes by due time), `events`
//! (the webhook stream).
//!
//! Member notices (`member_added` / `member_removed` for the sockets of every node) are published
//! by the scripts themselves, in the same atomic step as the change, each with the channel's
//! new version; a joiner's member list carries the version it was read at. So a node delivers to
//! a joiner exactly the notices after its list: never one already in it, never one missing.
//!
//! The scripts are `.lua` files in `lua/`. `lua/channel_prelude.lua` holds the helpers
//! every channel script but `PUBLISH_CACHED` shares (the time, appending one webhook event to the
//! stream, publishing one notice in the wire format of [`super::fanout`]) and is glued in front
//! of each with `concat!`. Those scripts' last argument lists the apps that have webhook
//! endpoints (one per line, or `*` for all): only their events go into the streams, which nobody
//! would read and trim for the others. The one before it lists the apps that announce
//! subscription counts, each with its window in ms (`{app}\t{window}` per line).

/// The line of a script that names its publish command.
const CLASSIC: &str = "local PUBLISH = 'PUBLISH'";

/// A script that publishes with `SPUBLISH` (sharded pub/sub on Redis Cluster) instead.
pub fn sharded(script: &str) -> String {
    assert!(
        script.contains(CLASSIC),
        "a publishing script names its command"
    );
    script.replacen(CLASSIC, "local PUBLISH = 'SPUBLISH'", 1)
}

/// A channel script with the shared prelude in front.
macro_rules! with_prelude {
    ($file:literal) => {
        concat!(include_str!("lua/channel_prelude.lua"), include_str!($file))
    };
}

/// KEYS: sockets, users, infos, flags, owned, pending, stream, reaped, the app's occupied
/// channels in the partition, the channel's cached event, the partition's epoch.
/// ARGV: socket, incarnation, user id ('' off presence), user info, app, channel, owned entry,
/// topic (`{prefix}:{pN}:bc:{app}:{channel}`), channel key stem, member limit (0: none), '1' on cache channels, the cluster's epoch,
/// 'r' to rebuild (after Redis lost its data: the socket was in before, so the channel's
/// occupancy and the member are restored without an event or a notice).
/// An error `EPOCH` when the partition's epoch is not the one given: the state was lost.
/// Returns {changed, subscription count, occupied now, member added now, count announcement
/// (see `count_changed`), version, cached event, members...}: on presence channels the member list (user id, user info, ...) as of `version`,
/// on cache channels the cached event ('' when none) as of `version`. `changed` is -1 when the
/// incarnation was reaped already (it is fenced and must not add sockets: nobody would reap them
/// again), -2 when the user would be one member too many.
pub const JOIN: &str = with_prelude!("lua/channel_join.lua");

/// KEYS: the channel's key stem (`...:ch:{app}:{channel}`), owned, pending, stream, the app's
/// occupied channels in the partition, the partition's epoch.
/// ARGV: socket, app, channel, owned entry, grace ms, topic, incarnation, the cluster's epoch.
/// Returns {changed, subscription count, vacated now, member removed now, count announcement,
/// the socket's user id or ''}; the error `EPOCH` as JOIN.
pub const LEAVE: &str = with_prelude!("lua/channel_leave.lua");

/// Removes up to `limit` sockets a dead incarnation left in one partition, as if each left, and
/// marks it reaped in the partition so a join it runs later (it was only paused) is refused;
/// marks older than a day go. KEYS: the dead incarnation's owned set, pending, stream, reaped. ARGV: the partition's channel key
/// prefix (`{prefix}:{pN}:ch:`), the dead incarnation, grace ms, limit, the topic prefix
/// (`{prefix}:{pN}:bc:`), the reaping incarnation.
/// Returns {sockets removed, entries left}.
pub const REAP: &str = with_prelude!("lua/channel_reap.lua");

/// Releases the partition's due holds whose channel is still empty or user still absent, and
/// announces the held subscription counts. KEYS: pending, stream. ARGV: the partition's key
/// prefix (`{prefix}:{pN}:ch:`), limit, the topic prefix (`{prefix}:{pN}:bc:`), the sweeping
/// incarnation. Returns the number of events emitted. The channel keys are derived here; they share the
/// partition's hash tag, so they are in the script's slot.
pub const SWEEP: &str = with_prelude!("lua/channel_sweep.lua");

/// Keeps a cache channel's event and publishes it, in one step, with the channel's next
/// version: a joiner's cached event and the events after it never overlap or leave a gap.
/// KEYS: the cached event, flags. ARGV: ttl ms, the frame JSON, topic, the message up to its
/// version (`h1\ne\n{origin}\n{except}\n`), the framed bytes.
/// Returns the version.
pub const PUBLISH_CACHED: &str = include_str!("lua/channel_publish_cached.lua");
