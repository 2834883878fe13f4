//! The MQTT driver: keeps a connection to the broker, with the offline status as last will,
//! reconnects with backoff, subscribes to the viewers' topics on every connection, reports the
//! connection as a state ([`Connection`]) and hands inbound publishes over as [`Inbound`]
//! messages.
//!
//! The subscription belongs to the connection, like the last will: on each connection it goes
//! out ahead of everything queued while the broker was away (a status saying "online" among
//! them), and the connection counts as up only once the broker has acknowledged it. A viewer
//! who offers the moment it sees campeer online is therefore always heard.
//!
//! rumqttc's event loop is polled in its own task and nothing awaits a publish from that task
//! (it would deadlock once the request channel fills). Everything else publishes with
//! `try_publish`, so a broker outage can never stall the daemon: what cannot be queued is
//! dropped with a warning, and the status is republished on every reconnect anyway.

use crate::config::MqttConfig;
use crate::protocol::{DeviceMessage, DeviceTopics, OFFLINE_STATUS, Segment};
use bytes::Bytes;
use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Filter, LastWill, Packet, Subscribe, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions, Request};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Signaling payloads are capped at 64 KiB by the protocol; leave room for the topic and
/// MQTT framing. campeer speaks MQTT 5 and announces this as its Maximum Packet Size, so the
/// broker never forwards a larger message to it: whatever another client publishes, campeer's
/// connection stays up. (MQTT 3.1.1 has no such promise; a client there can only drop the
/// connection on a packet it will not read.)
const MAX_PACKET_BYTES: u32 = 80 * 1024;
/// Requests (publishes, subscribes) queued for the event loop. Deep enough to absorb a burst
/// of candidates from several sessions; during an outage, the excess is dropped.
const REQUEST_QUEUE: usize = 256;
/// Inbound messages waiting for the device task.
const INBOUND_QUEUE: usize = 256;
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The broker connection as the device sees it. A state in a watch channel rather than
/// events in the inbound queue: a flood of inbound messages can never make the device miss a
/// reconnect (and stay unsubscribed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Connection {
    /// Connected, and subscribed to the viewers' topics.
    pub connected: bool,
    /// How many times the broker has accepted the connection and the subscription: a change
    /// means republish the status.
    pub connects: u64,
}

/// A message from the broker on one of the device's subscriptions.
#[derive(Debug)]
pub struct Inbound {
    pub topic: String,
    pub payload: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the MQTT request queue is full or closed")]
    Queue,
}

impl From<rumqttc::v5::ClientError> for PublishError {
    /// The error holds the whole request it could not queue; only the fact matters here.
    fn from(_: rumqttc::v5::ClientError) -> Self {
        PublishError::Queue
    }
}

/// Publishes on the device's topics. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct Publisher {
    client: AsyncClient,
    topics: Arc<DeviceTopics>,
}

impl Publisher {
    pub fn topics(&self) -> &DeviceTopics {
        &self.topics
    }

    /// A publisher on another device's topics over the same connection (a second camera).
    pub fn for_device(&self, topics: DeviceTopics) -> Self {
        Self {
            client: self.client.clone(),
            topics: Arc::new(topics),
        }
    }

    /// Sends a signaling message on a session's outbound topic (QoS 1, not retained).
    pub fn to_viewer(
        &self,
        session: &Segment,
        message: &DeviceMessage,
    ) -> Result<(), PublishError> {
        self.client.try_publish(
            self.topics.outbound(session),
            QoS::AtLeastOnce,
            false,
            message.to_json(),
        )?;
        Ok(())
    }

    /// Publishes the retained status (QoS 1).
    pub fn status(&self, json: String) -> Result<(), PublishError> {
        self.client
            .try_publish(self.topics.status(), QoS::AtLeastOnce, true, json)?;
        Ok(())
    }

    /// Publishes link figures on the stats topic (QoS 0, not retained: they are stale in a
    /// few seconds, and nobody should get an old one on subscribing).
    pub fn stats(&self, json: String) -> Result<(), PublishError> {
        self.client
            .try_publish(self.topics.stats(), QoS::AtMostOnce, false, json)?;
        Ok(())
    }
}

/// A live broker connection.
pub struct MqttLink {
    pub publisher: Publisher,
    pub connection: watch::Receiver<Connection>,
    pub inbound: mpsc::Receiver<Inbound>,
    task: JoinHandle<()>,
}

impl MqttLink {
    /// Starts connecting in the background; [`MqttLink::connection`] changes once the broker
    /// accepts. The last will marks the device offline if the connection dies uncleanly.
    /// `tls`: the broker is reached over TLS with these settings (mqtts://). `inbound_filters`:
    /// the viewers' topics of every camera on this connection.
    pub fn start(
        config: &MqttConfig,
        host: &str,
        port: u16,
        tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
        topics: DeviceTopics,
        inbound_filters: Vec<String>,
    ) -> Self {
        let mut options = MqttOptions::new(config.client_id.clone(), host, port);
        if let Some(tls) = tls {
            options.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls),
            ));
        }
        // Signaling is a few small messages whose latency the viewer waits on: no Nagle delay
        // (an answer written after the offer's PUBACK waited 40 ms for the broker's delayed
        // ACK, measured by `cargo bench --bench stream`).
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        options.set_network_options(network);
        options
            .set_keep_alive(config.keep_alive)
            .set_clean_start(true)
            .set_max_packet_size(Some(MAX_PACKET_BYTES))
            .set_request_channel_capacity(REQUEST_QUEUE)
            .set_last_will(LastWill::new(
                topics.status(),
                OFFLINE_STATUS,
                QoS::AtLeastOnce,
                true,
                None,
            ));
        if let Some(username) = &config.username {
            let password = config
                .password
                .as_ref()
                .map(|p| p.0.clone())
                .unwrap_or_default();
            options.set_credentials(username.clone(), password);
        }
        let (client, eventloop) = AsyncClient::new(options, REQUEST_QUEUE);
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE);
        let (connection_tx, connection) = watch::channel(Connection::default());
        let broker = format!("{host}:{port}");
        let task = tokio::spawn(drive(
            eventloop,
            inbound_filters,
            connection_tx,
            inbound_tx,
            broker,
        ));
        Self {
            publisher: Publisher {
                client,
                topics: Arc::new(topics),
            },
            connection,
            inbound,
            task,
        }
    }

    /// Disconnects cleanly and waits (bounded) for the event loop to flush what was queued
    /// before (each device's offline status) and the disconnect.
    pub async fn shutdown(self, wait: Duration) {
        if let Err(e) = self.publisher.client.try_disconnect() {
            tracing::warn!("could not queue the MQTT disconnect: {e}");
        }
        let mut task = self.task;
        if tokio::time::timeout(wait, &mut task).await.is_err() {
            tracing::warn!("MQTT did not flush within {wait:?}; the broker's last will covers it");
            task.abort();
        }
    }
}

async fn drive(
    mut eventloop: EventLoop,
    inbound_filters: Vec<String>,
    connection: watch::Sender<Connection>,
    inbound: mpsc::Sender<Inbound>,
    broker: String,
) {
    let mut backoff = BACKOFF_FIRST;
    let mut connected = false;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!("connected to MQTT broker {broker}");
                connected = true;
                backoff = BACKOFF_FIRST;
                // Ahead of whatever waits in the request queue: rumqttc sends its pending
                // requests first.
                eventloop
                    .pending
                    .push_front(Request::Subscribe(inbound_subscription(&inbound_filters)));
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                for (filter, reason) in inbound_filters.iter().zip(&ack.return_codes) {
                    if !matches!(reason, SubscribeReasonCode::Success(_)) {
                        tracing::error!(
                            "the broker refused campeer's subscription to {filter:?} ({reason:?}): \
                             viewers cannot reach this camera; check the broker's ACL"
                        );
                    }
                }
                // Only now may the status say online.
                connection.send_modify(|c| {
                    c.connected = true;
                    c.connects += 1;
                });
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                // Never blocks the event loop: when the device falls behind, the excess is
                // dropped (viewers resend what matters; MQTT gave no ordering promise anyway).
                let Ok(topic) = String::from_utf8(publish.topic.to_vec()) else {
                    tracing::debug!("ignoring a message whose topic is not UTF-8");
                    continue;
                };
                let message = Inbound {
                    topic,
                    payload: publish.payload,
                };
                if let Err(e) = inbound.try_send(message) {
                    tracing::warn!("dropping an MQTT message: the device is not keeping up ({e})");
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                tracing::debug!("MQTT disconnect sent");
                return;
            }
            Ok(_) => {}
            Err(rumqttc::v5::ConnectionError::RequestsDone) => {
                tracing::debug!("every MQTT client handle is gone; stopping the event loop");
                return;
            }
            Err(e) => {
                if connected {
                    tracing::warn!("lost MQTT broker {broker}: {e}");
                    connection.send_if_modified(|c| std::mem::replace(&mut c.connected, false));
                } else {
                    tracing::warn!(
                        "cannot reach MQTT broker {broker}: {e}; retrying in {backoff:?}"
                    );
                }
                connected = false;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// One SUBSCRIBE for every camera's viewer topics (QoS 1: an offer is not lost on the way).
fn inbound_subscription(filters: &[String]) -> Subscribe {
    Subscribe::new_many(
        filters
            .iter()
            .map(|filter| Filter::new(filter.clone(), QoS::AtLeastOnce)),
        None,
    )
}
