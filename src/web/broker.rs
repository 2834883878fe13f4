//! The embedded MQTT broker (rumqttd), for a zero-configuration first run: a plain MQTT 5
//! listener for campeer itself and other devices (campeer speaks MQTT 5, to announce its
//! Maximum Packet Size), and a WebSocket listener (MQTT 3.1.1) for the page.
//! Retained messages and last wills work on it, which the status topic needs.

use crate::config::EmbeddedBrokerConfig;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};

/// Largest MQTT payload the embedded broker accepts: the signaling limit plus framing.
const MAX_PAYLOAD: usize = 80 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "the embedded MQTT broker cannot listen on {addr}: {source} (is another broker \
         running there? Use it with --broker mqtt://HOST:PORT, or move this one with \
         --embedded-broker-listen / --embedded-broker-ws-listen)"
    )]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the embedded MQTT broker thread: {0}")]
    Thread(std::io::Error),
}

/// Where the running embedded broker listens.
#[derive(Debug, Clone)]
pub struct EmbeddedBroker {
    pub listen: SocketAddr,
    pub ws_listen: SocketAddr,
}

impl EmbeddedBroker {
    /// The address campeer's own MQTT client connects to.
    pub fn client_address(&self) -> (String, u16) {
        let ip = if self.listen.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            self.listen.ip().to_string()
        };
        (ip, self.listen.port())
    }
}

/// Starts the broker on its own threads (rumqttd runs its own runtimes); it runs for the rest
/// of the process. The listeners come up moments later; clients retry until they do.
pub fn start(config: &EmbeddedBrokerConfig) -> Result<EmbeddedBroker, BrokerError> {
    // rumqttd reports a failed bind only in its log; find out here, with a clear error.
    TcpListener::bind(config.listen).map_err(|source| BrokerError::Listen {
        addr: config.listen,
        source,
    })?;
    // rumqttd takes only a fixed address: port 0 becomes a free port found here (taken from
    // the kernel and released).
    let ws_listen = TcpListener::bind(config.ws_listen)
        .and_then(|listener| listener.local_addr())
        .map_err(|source| BrokerError::Listen {
            addr: config.ws_listen,
            source,
        })?;
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: MAX_PAYLOAD,
        max_inflight_count: 256,
        auth: match (&config.username, &config.password) {
            (Some(user), Some(password)) => {
                Some(HashMap::from([(user.clone(), password.0.clone())]))
            }
            _ => None,
        },
        external_auth: None,
        dynamic_filters: true,
    };
    let server = |name: &str, listen: SocketAddr| rumqttd::ServerSettings {
        name: name.to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: connections.clone(),
    };
    let broker_config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 256,
            max_outgoing_packet_count: 200,
            // Signaling is small and short-lived; keep the commit log small for a Pi.
            max_segment_size: 1024 * 1024,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: None,
        v5: Some(HashMap::from([(
            "mqtt".to_owned(),
            server("campeer-mqtt", config.listen),
        )])),
        ws: Some(HashMap::from([(
            "ws".to_owned(),
            server("campeer-mqtt-ws", ws_listen),
        )])),
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    };
    std::thread::Builder::new()
        .name("campeer-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(broker_config);
            if let Err(e) = broker.start() {
                tracing::error!("the embedded MQTT broker stopped: {e}");
            }
        })
        .map_err(BrokerError::Thread)?;
    tracing::info!(
        "embedded MQTT broker on mqtt://{} and ws://{}{}",
        config.listen,
        ws_listen,
        if config.username.is_some() {
            " (password required)"
        } else {
            ""
        }
    );
    Ok(EmbeddedBroker {
        listen: config.listen,
        ws_listen,
    })
}
