//! Signed-in users and their connections, for terminate_connections.

use std::sync::Arc;

use dashmap::DashMap;

use crate::protocol::SocketId;

/// The connections of each signed-in user of one app.
pub struct UserRegistry<S> {
    users: DashMap<Arc<str>, Vec<(SocketId, S)>>,
}

impl<S> Default for UserRegistry<S> {
    fn default() -> Self {
        UserRegistry {
            users: DashMap::new(),
        }
    }
}

impl<S: Clone> UserRegistry<S> {
    /// Records that `socket` signed in as `user_id`.
    pub fn add(&self, user_id: &Arc<str>, socket: SocketId, handle: S) {
        self.users
            .entry(user_id.clone())
            .or_default()
            .push((socket, handle));
    }

    /// Forgets `socket`'s sign-in as `user_id`.
    pub fn remove(&self, user_id: &str, socket: SocketId) {
        if let Some(mut sockets) = self.users.get_mut(user_id) {
            sockets.retain(|(s, _)| *s != socket);
        }
        self.users
            .remove_if(user_id, |_, sockets| sockets.is_empty());
    }

    /// The handles of every connection signed in as `user_id`.
    pub fn connections(&self, user_id: &str) -> Vec<S> {
        self.users
            .get(user_id)
            .map(|sockets| sockets.iter().map(|(_, h)| h.clone()).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_each_users_sockets() {
        let reg = UserRegistry::default();
        let u: Arc<str> = Arc::from("u");
        let (a, b) = ("1.1".parse().unwrap(), "2.2".parse().unwrap());
        reg.add(&u, a, 'a');
        reg.add(&u, b, 'b');
        assert_eq!(reg.connections("u"), ['a', 'b']);
        reg.remove("u", a);
        assert_eq!(reg.connections("u"), ['b']);
        reg.remove("u", b);
        assert!(reg.connections("u").is_empty());
    }
}
