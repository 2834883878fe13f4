//! Where a peer connection gathers its ICE candidates: which local addresses, which STUN and
//! TURN servers, and whether mDNS can run on this network at all.

use crate::config::IceConfig;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use webrtc::peer_connection::RTCIceServer;

#[derive(Debug, thiserror::Error)]
pub enum IceError {
    #[error("no usable address on ICE interface {0:?}")]
    NoInterfaceAddress(String),
}

/// Socket addresses for host candidates: each configured interface's addresses (names are
/// looked up now, so an interface that came up since start is found), or the IPv4 wildcard,
/// which webrtc expands to every non-loopback interface.
pub fn bind_addresses(interfaces: &[String]) -> Result<Vec<SocketAddr>, IceError> {
    if interfaces.is_empty() {
        return Ok(vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)]);
    }
    let known = rtc::shared::ifaces::ifaces().unwrap_or_default();
    let mut addrs = Vec::new();
    for wanted in interfaces {
        if let Ok(ip) = wanted.parse::<IpAddr>() {
            addrs.push(SocketAddr::new(ip, 0));
            continue;
        }
        let before = addrs.len();
        for iface in known.iter().filter(|i| &i.name == wanted) {
            if let Some(addr) = iface.addr {
                addrs.push(SocketAddr::new(addr.ip(), 0));
            }
        }
        if addrs.len() == before {
            return Err(IceError::NoInterfaceAddress(wanted.clone()));
        }
    }
    Ok(addrs)
}

/// The configured STUN and TURN servers in webrtc's form.
pub fn ice_servers(ice: &IceConfig) -> Vec<RTCIceServer> {
    ice.servers
        .iter()
        .map(|server| RTCIceServer {
            urls: server.urls.clone(),
            username: server.username.clone().unwrap_or_default(),
            credential: server
                .credential
                .as_ref()
                .map(|c| c.0.clone())
                .unwrap_or_default(),
        })
        .collect()
}

/// How often a network where mDNS could not start is tried again: a cable plugged in or a
/// route added later should bring it back without a restart.
const MDNS_RETRY: Duration = Duration::from_secs(60);

/// Whether mDNS can run here. webrtc joins 224.0.0.251 for every peer connection, and on a
/// network with no route to 224.0.0.0/4 (an isolated camera network, a direct cable) that join
/// fails and takes the whole connection with it. So campeer probes first and goes without mDNS
/// when it cannot start: remote `.local` candidates then stay unresolved, and the viewer's
/// connectivity checks (peer-reflexive candidates) connect instead.
#[derive(Debug, Default)]
pub struct MdnsProbe {
    last: Option<(Instant, bool)>,
}

/// What [`MdnsProbe::decide`] asks the caller to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MdnsDecision {
    /// Use the remembered answer.
    Known(bool),
    /// Try to open the multicast socket now and report with [`MdnsProbe::record`].
    Probe,
}

impl MdnsProbe {
    pub fn decide(&self, now: Instant) -> MdnsDecision {
        match self.last {
            Some((_, true)) => MdnsDecision::Known(true),
            Some((at, false)) if now.saturating_duration_since(at) < MDNS_RETRY => {
                MdnsDecision::Known(false)
            }
            _ => MdnsDecision::Probe,
        }
    }

    /// Records a probe's outcome; `true` when it changed what is known (worth a log line).
    pub fn record(&mut self, now: Instant, available: bool) -> bool {
        let changed = self.last.map(|(_, was)| was) != Some(available);
        self.last = Some((now, available));
        changed
    }
}

static MDNS: Mutex<MdnsProbe> = Mutex::new(MdnsProbe { last: None });

/// Whether peer connections may use mDNS now, probing the network when due and logging each
/// change once.
pub fn mdns_available() -> bool {
    let now = Instant::now();
    let decision = MDNS.lock().map(|probe| probe.decide(now));
    let decision = match decision {
        Ok(decision) => decision,
        // A poisoned probe only means a panic elsewhere; mDNS is an extra, go without.
        Err(_) => return false,
    };
    match decision {
        MdnsDecision::Known(available) => available,
        MdnsDecision::Probe => {
            let outcome = rtc::mdns::MulticastSocket::new().into_std();
            let available = outcome.is_ok();
            let changed = MDNS
                .lock()
                .map(|mut probe| probe.record(now, available))
                .unwrap_or(false);
            if changed {
                match outcome {
                    Ok(_) => {
                        tracing::info!("mDNS is available: viewers' .local candidates resolve")
                    }
                    Err(e) => tracing::warn!(
                        "mDNS cannot start on this network ({e}); going without it: viewers' \
                         .local candidates are not resolved, their connectivity checks still \
                         connect (tried again every {} s)",
                        MDNS_RETRY.as_secs()
                    ),
                }
            }
            available
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{IceServer, Secret};

    #[test]
    fn interfaces_resolve_to_bind_addresses() {
        let wildcard = bind_addresses(&[]).unwrap();
        assert_eq!(wildcard, vec!["0.0.0.0:0".parse::<SocketAddr>().unwrap()]);
        let explicit = bind_addresses(&["10.1.2.3".into()]).unwrap();
        assert_eq!(explicit, vec!["10.1.2.3:0".parse::<SocketAddr>().unwrap()]);
        let lo = bind_addresses(&["lo".into()]).unwrap();
        assert!(lo.iter().any(|a| a.ip().is_loopback()), "{lo:?}");
        assert!(matches!(
            bind_addresses(&["no-such-if0".into()]),
            Err(IceError::NoInterfaceAddress(_))
        ));
    }

    #[test]
    fn an_unavailable_mdns_is_retried_after_a_while_an_available_one_is_kept() {
        let start = Instant::now();
        let mut probe = MdnsProbe::default();
        assert_eq!(probe.decide(start), MdnsDecision::Probe);
        assert!(probe.record(start, false), "the first outcome is news");
        assert_eq!(
            probe.decide(start + Duration::from_secs(1)),
            MdnsDecision::Known(false)
        );
        let later = start + MDNS_RETRY;
        assert_eq!(probe.decide(later), MdnsDecision::Probe);
        assert!(
            !probe.record(later, false),
            "the same outcome again is not news"
        );
        assert!(probe.record(later, true));
        assert_eq!(
            probe.decide(later + MDNS_RETRY * 10),
            MdnsDecision::Known(true)
        );
    }

    #[test]
    fn servers_keep_their_credentials_in_webrtc_form() {
        let ice = IceConfig {
            servers: vec![IceServer {
                urls: vec!["turn:10.0.0.1:3478?transport=udp".into()],
                username: Some("u".into()),
                credential: Some(Secret("p".into())),
            }],
            interfaces: vec![],
            loopback_only: false,
            tls_ca_file: None,
        };
        let servers = ice_servers(&ice);
        assert_eq!(servers[0].urls, ["turn:10.0.0.1:3478?transport=udp"]);
        assert_eq!(servers[0].username, "u");
        assert_eq!(servers[0].credential, "p");
    }
}
