//! The ICE servers a WHIP server hands its publisher, in `Link` headers (RFC 9725 §4.6):
//! `<turn:turn.example.net?transport=udp>; rel="ice-server"; username="u"; credential="p";
//! credential-type="password"`, several per header separated by commas. Pure and bounded:
//! what a server sends is read, never trusted to be short.

use crate::config::{IceServer, Secret};

/// Servers taken from one response at most; more are ignored.
pub const MAX_ICE_SERVERS: usize = 8;
/// A link's target or parameter longer than this is not an ICE server's.
const MAX_FIELD: usize = 512;

/// The ICE servers among `headers` (each a `Link` header's value), in order.
pub fn ice_servers<'h>(headers: impl IntoIterator<Item = &'h str>) -> Vec<IceServer> {
    let mut servers = Vec::new();
    for header in headers {
        for link in split_links(header) {
            if servers.len() >= MAX_ICE_SERVERS {
                return servers;
            }
            if let Some(server) = ice_server(link) {
                servers.push(server);
            }
        }
    }
    servers
}

/// One link, if it is an ICE server's: a STUN or TURN URL with `rel="ice-server"`.
fn ice_server(link: &str) -> Option<IceServer> {
    let link = link.trim();
    let rest = link.strip_prefix('<')?;
    let (target, params) = rest.split_once('>')?;
    let target = target.trim();
    let scheme_ok = ["stun:", "stuns:", "turn:", "turns:"]
        .iter()
        .any(|scheme| target.starts_with(scheme));
    if !scheme_ok || target.len() > MAX_FIELD || target.chars().any(char::is_control) {
        return None;
    }
    let mut rel = None;
    let mut username = None;
    let mut credential = None;
    for param in params.split(';') {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        if value.len() > MAX_FIELD || value.chars().any(char::is_control) {
            return None;
        }
        match name.trim().to_ascii_lowercase().as_str() {
            "rel" => rel = Some(value.to_owned()),
            "username" => username = Some(value.to_owned()),
            "credential" => credential = Some(Secret(value.to_owned())),
            _ => {}
        }
    }
    let is_ice_server = rel.is_some_and(|rel| {
        rel.split_ascii_whitespace()
            .any(|r| r.eq_ignore_ascii_case("ice-server"))
    });
    if !is_ice_server || (target.starts_with("turn") && credential.is_none()) {
        return None;
    }
    Some(IceServer {
        urls: vec![target.to_owned()],
        username,
        credential,
    })
}

/// A header's links: split at commas outside `<…>` and quotes.
fn split_links(header: &str) -> Vec<&str> {
    let mut links = Vec::new();
    let (mut start, mut in_target, mut in_quotes) = (0, false, false);
    for (i, c) in header.char_indices() {
        match c {
            '<' if !in_quotes => in_target = true,
            '>' if !in_quotes => in_target = false,
            '"' if !in_target => in_quotes = !in_quotes,
            ',' if !in_target && !in_quotes => {
                links.push(header.get(start..i).unwrap_or(""));
                start = i + 1;
            }
            _ => {}
        }
    }
    links.push(header.get(start..).unwrap_or(""));
    links
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_and_turn_servers_are_read_with_their_credentials() {
        let servers = ice_servers([
            r#"<stun:stun.example.net>; rel="ice-server""#,
            r#"<turn:turn.example.net?transport=udp>; rel="ice-server"; username="user"; credential="pa,ss"; credential-type="password", <https://example.net/doc>; rel="help""#,
        ]);
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].urls, ["stun:stun.example.net"]);
        assert_eq!(servers[0].username, None);
        assert_eq!(servers[1].urls, ["turn:turn.example.net?transport=udp"]);
        assert_eq!(servers[1].username.as_deref(), Some("user"));
        assert_eq!(
            servers[1].credential.as_ref().map(|c| c.0.as_str()),
            Some("pa,ss")
        );
    }

    #[test]
    fn junk_other_links_and_floods_give_no_servers() {
        assert!(
            ice_servers(["", "garbage", "<stun:x", "<http://x>; rel=\"ice-server\""]).is_empty()
        );
        // A TURN server without a credential cannot be used.
        assert!(ice_servers([r#"<turn:t.example.net>; rel="ice-server""#]).is_empty());
        let flood = vec![r#"<stun:s.example.net>; rel="ice-server""#; 100].join(",");
        assert_eq!(ice_servers([flood.as_str()]).len(), MAX_ICE_SERVERS);
        let long = format!(r#"<stun:{}>; rel="ice-server""#, "a".repeat(1000));
        assert!(ice_servers([long.as_str()]).is_empty());
    }
}
