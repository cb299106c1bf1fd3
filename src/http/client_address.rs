//! The one answer to "who is this client?" for every per-address rule (the decision hooks'
//! share of `max_concurrent`, the console's token throttle, the `ip` a hook is told).
//!
//! Behind `n` trusted proxies the client is the `n`-th `X-Forwarded-For` entry from the
//! **right**: each proxy appends the address it saw, so the right end is what our own proxies
//! wrote, and everything left of it is whatever the client chose to send.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request};

/// The peer address the listener accepted the connection from (set on every request).
pub fn peer_of<B>(request: &Request<B>) -> Option<IpAddr> {
    let ConnectInfo(addr) = request.extensions().get::<ConnectInfo<SocketAddr>>()?;
    Some(addr.ip().to_canonical())
}

/// The client's address: `peer`, or with `trust_hops` proxies in front, the entry that many
/// from the right of `X-Forwarded-For` (as Sockudo's `trust_hops` counts). A list shorter than
/// that, or an entry that is not an IP address, falls back to `peer`: the request did not come
/// through the proxies as configured, so nothing in the list can be trusted.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trust_hops: usize) -> IpAddr {
    if trust_hops == 0 {
        return peer;
    }
    // Several headers count as one list, in order (RFC 9110 section 5.3).
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect();
    let Some(index) = entries.len().checked_sub(trust_hops) else {
        return peer;
    };
    entries
        .get(index)
        .and_then(|entry| parse_entry(entry))
        .map_or(peer, |ip| ip.to_canonical())
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    entry.parse::<SocketAddr>().ok().map(|addr| addr.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn the_right_end_is_what_our_proxies_wrote() {
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let list = headers(&["203.0.113.9, 198.51.100.7", "10.0.0.1"]);
        assert_eq!(client_address(peer, &list, 0), peer);
        assert_eq!(client_address(peer, &list, 1).to_string(), "10.0.0.1");
        assert_eq!(client_address(peer, &list, 2).to_string(), "198.51.100.7");
        assert_eq!(client_address(peer, &list, 3).to_string(), "203.0.113.9");
        // Fewer entries than hops: not what the proxies would have written.
        assert_eq!(client_address(peer, &list, 4), peer);
    }

    #[test]
    fn a_missing_or_unusable_entry_falls_back_to_the_peer() {
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(client_address(peer, &HeaderMap::new(), 1), peer);
        assert_eq!(client_address(peer, &headers(&["unknown"]), 1), peer);
        assert_eq!(
            client_address(peer, &headers(&["[2001:db8::1]:443"]), 1).to_string(),
            "2001:db8::1"
        );
        assert_eq!(
            client_address(peer, &headers(&["::ffff:192.0.2.1"]), 1).to_string(),
            "192.0.2.1"
        );
    }
}
