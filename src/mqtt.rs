//! The MQTT driver: keeps a connection to a broker, with the offline status as last will,
//! reconnects with backoff (to the next broker in `mqtt.broker`'s list, in turn:
//! [`BrokerRotation`]), subscribes to the viewers' topics on every connection, reports the
//! connection as a state ([`Connection`]) and hands inbound publishes over as [`Inbound`]
//! messages.
//!
//! The subscription belongs to the connection, like the last will: on each connection it goes
//! out ahead of everything queued while the broker was away (a status saying "online" among
//! them), and the connection counts as up only once the broker has acknowledged it. A viewer
//! who offers the moment it sees campeer online is therefore always heard.
//!
//! campeer speaks MQTT 5, and MQTT 3.1.1 to a broker that refuses 5 (RabbitMQ's MQTT plugin
//! and several cloud brokers speak only 3.1.1): [`ProtocolChoice`] decides which version the
//! next connection attempt uses, for each broker of the list on its own.
//!
//! rumqttc's event loop is polled in its own task and nothing awaits a publish from that task
//! (it would deadlock once the request channel fills); it waits only, and briefly, for room
//! in the inbound queue, which the device empties without ever waiting on this task.
//! Everything else publishes with `try_publish`, so a broker outage can never stall the
//! daemon: what cannot be queued is dropped with a warning, and the status is republished on
//! every reconnect anyway.

mod rotation;

pub use rotation::{BrokerRotation, NextAttempt};

use crate::config::{BrokerAddress, MqttConfig};
use crate::protocol::{DeviceMessage, DeviceTopics, OFFLINE_STATUS, Segment};
use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Filter, LastWill, Packet, Subscribe, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions, Request};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Signaling payloads are capped at 64 KiB by the protocol; leave room for the topic and
/// MQTT framing. Over MQTT 5 campeer announces this as its Maximum Packet Size, so the broker
/// never forwards a larger message to it: whatever another client publishes, campeer's
/// connection stays up. MQTT 3.1.1 has no such promise; there campeer refuses to read a
/// larger packet, which closes the connection (it then reconnects), so memory stays bounded.
const MAX_PACKET_BYTES: u32 = 80 * 1024;
/// campeer takes the viewers' messages at QoS 0, whatever QoS they were published with. The
/// connection to the broker is one TCP stream, so nothing is lost while it is up, and campeer
/// keeps no session across reconnects (a clean start), so QoS 1 would keep nothing for it
/// either. At QoS 1, a broker that withholds an oversize message (above the Maximum Packet
/// Size) may still count it as in flight: mosquitto 2.0 does, for good, and after 20 such
/// messages from anyone it delivers campeer nothing more until campeer reconnects.
const INBOUND_QOS: QoS = QoS::AtMostOnce;
/// Requests (publishes, subscribes) queued for the event loop. Deep enough to absorb a burst
/// of candidates from several sessions; during an outage, the excess is dropped.
const REQUEST_QUEUE: usize = 256;
/// QoS 1 publishes awaiting the broker's acknowledgement at once, over MQTT 5. rumqttc sizes
/// a table for them up front, and without a limit of ours it takes the protocol's 65,535: 14
/// MB written at start, more than half of an idle campeer's memory (heaptrack). More than the
/// request queue could never be in flight anyway; past this, publishes wait in that queue.
const MAX_OUTGOING_INFLIGHT: u16 = 256;
/// Inbound messages waiting for the device task.
const INBOUND_QUEUE: usize = 256;
/// How long a message from the broker may wait for room in a full inbound queue before it is
/// dropped: a burst is taken whole (the device gets through hundreds of messages a second,
/// and a hangup lost in a burst would hold its viewer's place until the session times out),
/// while a device that has stopped cannot hold the connection up for long.
pub const INBOUND_WAIT: Duration = Duration::from_secs(1);

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

impl From<rumqttc::ClientError> for PublishError {
    fn from(_: rumqttc::ClientError) -> Self {
        PublishError::Queue
    }
}

/// The MQTT version of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    V5,
    V311,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::V5 => "MQTT 5",
            Protocol::V311 => "MQTT 3.1.1",
        })
    }
}

/// How a connection attempt failed before the broker accepted it, as far as the choice of
/// version goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The broker said it does not speak this version, or answered in a form this version
    /// cannot read (a 3.1.1 CONNACK to an MQTT 5 CONNECT).
    VersionRefused,
    /// The broker closed the connection on the CONNECT without a word: some brokers do that
    /// to a version they do not speak, but a broker restarting does it too.
    ClosedOnConnect,
    /// Anything else (unreachable, TLS, credentials): no reason to change versions.
    Other,
}

/// Closes on the CONNECT in a row that count as the broker refusing the version.
const CLOSES_FOR_REFUSAL: u8 = 2;

/// Which MQTT version the next connection attempt uses: MQTT 5 first; 3.1.1 once the broker
/// refuses 5; 5 again if the broker then refuses 3.1.1 too. A broker that closes the
/// connection on the CONNECT twice in a row is taken for one that refuses the version, unless
/// it has accepted that version before (then it is more likely restarting). Once is not
/// enough: a broker still starting resets a connection too, and a needless fall back to
/// 3.1.1 would stay for good, without the Maximum Packet Size that keeps oversize messages
/// from campeer.
#[derive(Debug, Clone)]
pub struct ProtocolChoice {
    current: Protocol,
    accepted: Option<Protocol>,
    /// Closes on the CONNECT in a row, in the current version.
    closed_in_a_row: u8,
    /// Whether the fallback to 3.1.1 has been explained in the log.
    explained: bool,
}

impl Default for ProtocolChoice {
    fn default() -> Self {
        Self {
            current: Protocol::V5,
            accepted: None,
            closed_in_a_row: 0,
            explained: false,
        }
    }
}

impl ProtocolChoice {
    pub fn current(&self) -> Protocol {
        self.current
    }

    /// The broker accepted a connection in the current version.
    pub fn accepted(&mut self) {
        self.accepted = Some(self.current);
        self.closed_in_a_row = 0;
    }

    /// A connection attempt failed before the broker accepted it. Returns the version to try
    /// next when it changes.
    pub fn failed(&mut self, failure: HandshakeFailure) -> Option<Protocol> {
        let switch = match failure {
            HandshakeFailure::VersionRefused => true,
            HandshakeFailure::ClosedOnConnect => {
                self.closed_in_a_row = self.closed_in_a_row.saturating_add(1);
                self.accepted != Some(self.current) && self.closed_in_a_row >= CLOSES_FOR_REFUSAL
            }
            // Not a close on the CONNECT: the closes before it were not in a row with the next.
            HandshakeFailure::Other => {
                self.closed_in_a_row = 0;
                false
            }
        };
        if !switch {
            return None;
        }
        self.closed_in_a_row = 0;
        self.current = match self.current {
            Protocol::V5 => Protocol::V311,
            Protocol::V311 => Protocol::V5,
        };
        Some(self.current)
    }

    /// Whether the loss that comes with 3.1.1 is still to be told (once per broker).
    fn explain_fallback(&mut self) -> bool {
        self.current == Protocol::V311 && !std::mem::replace(&mut self.explained, true)
    }
}

fn closed_on_connect(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
    )
}

impl From<&rumqttc::v5::ConnectionError> for HandshakeFailure {
    fn from(error: &rumqttc::v5::ConnectionError) -> Self {
        use rumqttc::v5::mqttbytes::v5::ConnectReturnCode;
        use rumqttc::v5::{ConnectionError as E, StateError as S};
        match error {
            E::ConnectionRefused(ConnectReturnCode::UnsupportedProtocolVersion)
            | E::MqttState(S::Deserialization(_))
            | E::NotConnAck(_) => HandshakeFailure::VersionRefused,
            E::MqttState(S::ConnectionAborted) => HandshakeFailure::ClosedOnConnect,
            E::MqttState(S::Io(e)) | E::Io(e) if closed_on_connect(e) => {
                HandshakeFailure::ClosedOnConnect
            }
            _ => HandshakeFailure::Other,
        }
    }
}

impl From<&rumqttc::ConnectionError> for HandshakeFailure {
    fn from(error: &rumqttc::ConnectionError) -> Self {
        use rumqttc::{ConnectReturnCode, ConnectionError as E, StateError as S};
        match error {
            E::ConnectionRefused(ConnectReturnCode::RefusedProtocolVersion)
            | E::MqttState(S::Deserialization(_))
            | E::NotConnAck(_) => HandshakeFailure::VersionRefused,
            E::MqttState(S::Io(e)) | E::Io(e) if closed_on_connect(e) => {
                HandshakeFailure::ClosedOnConnect
            }
            _ => HandshakeFailure::Other,
        }
    }
}

/// campeer's client handles for both versions; publishes go to the one in use.
#[derive(Clone)]
struct Client {
    v5: AsyncClient,
    v311: rumqttc::AsyncClient,
    /// Set while the connection speaks MQTT 3.1.1.
    speaking_v311: Arc<AtomicBool>,
}

impl Client {
    fn try_publish(
        &self,
        topic: String,
        qos: QoS,
        retain: bool,
        payload: impl Into<Bytes>,
    ) -> Result<(), PublishError> {
        let payload: Bytes = payload.into();
        if self.speaking_v311.load(Ordering::Relaxed) {
            self.v311
                .try_publish(topic, qos_311(qos), retain, payload)?;
        } else {
            self.v5.try_publish(topic, qos, retain, payload)?;
        }
        Ok(())
    }

    fn try_disconnect(&self) -> Result<(), PublishError> {
        if self.speaking_v311.load(Ordering::Relaxed) {
            self.v311.try_disconnect()?;
        } else {
            self.v5.try_disconnect()?;
        }
        Ok(())
    }
}

fn qos_311(qos: QoS) -> rumqttc::QoS {
    match qos {
        QoS::AtMostOnce => rumqttc::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::QoS::ExactlyOnce,
    }
}

/// Publishes on the device's topics. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct Publisher {
    client: Client,
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
        )
    }

    /// Publishes the retained status (QoS 1).
    pub fn status(&self, json: String) -> Result<(), PublishError> {
        self.client
            .try_publish(self.topics.status(), QoS::AtLeastOnce, true, json)
    }

    /// Publishes the retained motion state (QoS 1).
    pub fn motion(&self, json: String) -> Result<(), PublishError> {
        self.client
            .try_publish(self.topics.motion(), QoS::AtLeastOnce, true, json)
    }

    /// Publishes the retained snapshot of the last motion (QoS 1), a JPEG.
    pub fn snapshot(&self, jpeg: Vec<u8>) -> Result<(), PublishError> {
        self.client
            .try_publish(self.topics.snapshot(), QoS::AtLeastOnce, true, jpeg)
    }

    /// Publishes link figures on the stats topic (QoS 0, not retained: they are stale in a
    /// few seconds, and nobody should get an old one on subscribing).
    pub fn stats(&self, json: String) -> Result<(), PublishError> {
        self.client
            .try_publish(self.topics.stats(), QoS::AtMostOnce, false, json)
    }
}

/// A live broker connection.
pub struct MqttLink {
    pub publisher: Publisher,
    pub connection: watch::Receiver<Connection>,
    pub inbound: mpsc::Receiver<Inbound>,
    task: JoinHandle<()>,
}

/// `MqttLink::start` was given no broker to connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no MQTT broker to connect to")]
pub struct NoBroker;

impl MqttLink {
    /// Starts connecting in the background; [`MqttLink::connection`] changes once the broker
    /// accepts. The last will marks the device offline if the connection dies uncleanly.
    /// `brokers`: tried in turn, at least one. `tls`: the mqtts:// brokers are reached over TLS
    /// with these settings. `inbound_filters`: the viewers' topics of every camera on this
    /// connection.
    pub fn start(
        config: &MqttConfig,
        brokers: Vec<BrokerAddress>,
        tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
        topics: DeviceTopics,
        inbound_filters: Vec<String>,
    ) -> Result<Self, NoBroker> {
        let first = brokers.first().ok_or(NoBroker)?;
        let settings = ConnectSettings {
            client_id: config.client_id().to_owned(),
            keep_alive: config.keep_alive(),
            credentials: config.username.as_ref().map(|username| {
                let password = config.password.as_ref().map(|p| p.0.clone());
                (username.clone(), password.unwrap_or_default())
            }),
            will_topic: topics.status(),
            tls,
        };
        let (v5, v5_events) = AsyncClient::new(settings.v5(first), REQUEST_QUEUE);
        let (v311, mut v311_events) =
            rumqttc::AsyncClient::new(settings.v311(first), REQUEST_QUEUE);
        v311_events.set_network_options(network_options());

        let client = Client {
            v5,
            v311,
            speaking_v311: Arc::default(),
        };
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE);
        let (connection_tx, connection) = watch::channel(Connection::default());
        let driver = Driver {
            v5: v5_events,
            v311: v311_events,
            choices: vec![ProtocolChoice::default(); brokers.len()],
            rotation: BrokerRotation::new(brokers.len()),
            aimed_at: 0,
            brokers,
            settings,
            speaking_v311: Arc::clone(&client.speaking_v311),
            inbound_filters,
            connection: connection_tx,
            inbound: inbound_tx,
        };
        let task = tokio::spawn(driver.run());
        Ok(Self {
            publisher: Publisher {
                client,
                topics: Arc::new(topics),
            },
            connection,
            inbound,
            task,
        })
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

/// What either version's event loop produced, as far as the driver cares.
enum Polled {
    ConnAck,
    /// Whether the broker granted each filter of the subscription.
    SubAck(Vec<bool>),
    Publish {
        topic: Bytes,
        payload: Bytes,
    },
    DisconnectSent,
    Other,
    /// Every client handle is gone.
    Done,
    Failed {
        failure: HandshakeFailure,
        error: String,
    },
}

impl From<Result<Event, rumqttc::v5::ConnectionError>> for Polled {
    fn from(polled: Result<Event, rumqttc::v5::ConnectionError>) -> Self {
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => Polled::ConnAck,
            Ok(Event::Incoming(Packet::SubAck(ack))) => Polled::SubAck(
                ack.return_codes
                    .iter()
                    .map(|code| matches!(code, SubscribeReasonCode::Success(_)))
                    .collect(),
            ),
            Ok(Event::Incoming(Packet::Publish(publish))) => Polled::Publish {
                topic: publish.topic,
                payload: publish.payload,
            },
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => Polled::DisconnectSent,
            Ok(_) => Polled::Other,
            Err(rumqttc::v5::ConnectionError::RequestsDone) => Polled::Done,
            Err(error) => Polled::Failed {
                failure: HandshakeFailure::from(&error),
                error: error.to_string(),
            },
        }
    }
}

impl From<Result<rumqttc::Event, rumqttc::ConnectionError>> for Polled {
    fn from(polled: Result<rumqttc::Event, rumqttc::ConnectionError>) -> Self {
        use rumqttc::{Event, Packet};
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => Polled::ConnAck,
            Ok(Event::Incoming(Packet::SubAck(ack))) => Polled::SubAck(
                ack.return_codes
                    .iter()
                    .map(|code| matches!(code, rumqttc::SubscribeReasonCode::Success(_)))
                    .collect(),
            ),
            Ok(Event::Incoming(Packet::Publish(publish))) => Polled::Publish {
                topic: publish.topic.into(),
                payload: publish.payload,
            },
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => Polled::DisconnectSent,
            Ok(_) => Polled::Other,
            Err(rumqttc::ConnectionError::RequestsDone) => Polled::Done,
            Err(error) => Polled::Failed {
                failure: HandshakeFailure::from(&error),
                error: error.to_string(),
            },
        }
    }
}

/// What every connection attempt shares, whichever broker and version it goes to.
struct ConnectSettings {
    client_id: String,
    keep_alive: Duration,
    credentials: Option<(String, String)>,
    /// The status topic, where the last will says offline.
    will_topic: String,
    /// For the mqtts:// brokers.
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

/// Signaling is a few small messages whose latency the viewer waits on: no Nagle delay (an
/// answer written after the offer's PUBACK waited 40 ms for the broker's delayed ACK,
/// measured by `cargo bench --bench stream`).
fn network_options() -> rumqttc::NetworkOptions {
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network
}

impl ConnectSettings {
    fn transport(&self, broker: &BrokerAddress) -> Option<rumqttc::Transport> {
        let tls = self.tls.clone().filter(|_| broker.tls)?;
        Some(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls),
        ))
    }

    /// MQTT 5 to `broker`.
    fn v5(&self, broker: &BrokerAddress) -> MqttOptions {
        let mut options = MqttOptions::new(self.client_id.clone(), &broker.host, broker.port);
        if let Some(transport) = self.transport(broker) {
            options.set_transport(transport);
        }
        options.set_network_options(network_options());
        options
            .set_keep_alive(self.keep_alive)
            .set_clean_start(true)
            .set_max_packet_size(Some(MAX_PACKET_BYTES))
            .set_outgoing_inflight_upper_limit(MAX_OUTGOING_INFLIGHT)
            .set_request_channel_capacity(REQUEST_QUEUE)
            .set_last_will(LastWill::new(
                self.will_topic.clone(),
                OFFLINE_STATUS,
                QoS::AtLeastOnce,
                true,
                None,
            ));
        if let Some((username, password)) = &self.credentials {
            options.set_credentials(username.clone(), password.clone());
        }
        options
    }

    /// MQTT 3.1.1 to `broker`.
    fn v311(&self, broker: &BrokerAddress) -> rumqttc::MqttOptions {
        let mut options =
            rumqttc::MqttOptions::new(self.client_id.clone(), &broker.host, broker.port);
        if let Some(transport) = self.transport(broker) {
            options.set_transport(transport);
        }
        let max = MAX_PACKET_BYTES as usize;
        options
            .set_keep_alive(self.keep_alive)
            .set_clean_session(true)
            .set_max_packet_size(max, max)
            .set_request_channel_capacity(REQUEST_QUEUE)
            .set_last_will(rumqttc::LastWill::new(
                self.will_topic.clone(),
                OFFLINE_STATUS,
                rumqttc::QoS::AtLeastOnce,
                true,
            ));
        if let Some((username, password)) = &self.credentials {
            options.set_credentials(username.clone(), password.clone());
        }
        options
    }
}

/// Polls the event loop of the version in use, and owns everything the connection decides.
struct Driver {
    v5: EventLoop,
    v311: rumqttc::EventLoop,
    /// The brokers, tried in turn ([`BrokerRotation`]); never empty.
    brokers: Vec<BrokerAddress>,
    rotation: BrokerRotation,
    /// The broker both event loops are set to reach.
    aimed_at: usize,
    /// Each broker's version, by its place in `brokers`: a cluster may mix brokers.
    choices: Vec<ProtocolChoice>,
    settings: ConnectSettings,
    speaking_v311: Arc<AtomicBool>,
    inbound_filters: Vec<String>,
    connection: watch::Sender<Connection>,
    inbound: mpsc::Sender<Inbound>,
}

impl Driver {
    /// The version choice of the broker being tried.
    fn choice(&mut self) -> &mut ProtocolChoice {
        let current = self.rotation.current();
        // `choices` has one entry per broker and the rotation never leaves the list; the
        // fallback is for the compiler, not a case that happens.
        if current >= self.choices.len() {
            self.choices.resize(current + 1, ProtocolChoice::default());
        }
        &mut self.choices[current]
    }

    /// The broker being tried, for the log.
    fn broker(&self) -> String {
        self.brokers
            .get(self.rotation.current())
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// Points both event loops at the rotation's broker, in the version it last spoke.
    fn aim(&mut self) {
        let current = self.rotation.current();
        if current == self.aimed_at {
            return;
        }
        let Some(broker) = self.brokers.get(current) else {
            return;
        };
        self.v5.options = self.settings.v5(broker);
        self.v311.mqtt_options = self.settings.v311(broker);
        self.aimed_at = current;
        let v311 = self.choice().current() == Protocol::V311;
        self.speaking_v311.store(v311, Ordering::Relaxed);
    }

    async fn poll(&mut self) -> Polled {
        match self.choice().current() {
            Protocol::V5 => self.v5.poll().await.into(),
            Protocol::V311 => self.v311.poll().await.into(),
        }
    }

    /// The subscription to the viewers' topics, ahead of whatever waits in the request queue
    /// (rumqttc sends its pending requests first).
    fn subscribe_first(&mut self) {
        match self.choice().current() {
            Protocol::V5 => self
                .v5
                .pending
                .push_front(Request::Subscribe(Subscribe::new_many(
                    self.inbound_filters
                        .iter()
                        .map(|filter| Filter::new(filter.clone(), INBOUND_QOS)),
                    None,
                ))),
            Protocol::V311 => self.v311.pending.push_front(rumqttc::Request::Subscribe(
                rumqttc::Subscribe::new_many(self.inbound_filters.iter().map(|filter| {
                    rumqttc::SubscribeFilter::new(filter.clone(), qos_311(INBOUND_QOS))
                })),
            )),
        }
    }

    async fn run(mut self) {
        let mut connected = false;
        loop {
            match self.poll().await {
                Polled::ConnAck => {
                    tracing::info!(
                        "connected to MQTT broker {} ({})",
                        self.broker(),
                        self.choice().current()
                    );
                    self.choice().accepted();
                    self.rotation.connected();
                    connected = true;
                    self.subscribe_first();
                }
                Polled::SubAck(granted) => {
                    for (filter, granted) in self.inbound_filters.iter().zip(granted) {
                        if !granted {
                            tracing::error!(
                                "the broker refused campeer's subscription to {filter:?}: \
                                 viewers cannot reach this camera; check the broker's ACL"
                            );
                        }
                    }
                    // Only now may the status say online.
                    self.connection.send_modify(|c| {
                        c.connected = true;
                        c.connects += 1;
                    });
                }
                Polled::Publish { topic, payload } => {
                    // Waits a moment when the device is behind (a burst), then drops the
                    // message: the event loop is never held up for long.
                    let Ok(topic) = String::from_utf8(topic.to_vec()) else {
                        tracing::debug!("ignoring a message whose topic is not UTF-8");
                        continue;
                    };
                    let message = Inbound { topic, payload };
                    if let Err(e) = self.inbound.send_timeout(message, INBOUND_WAIT).await {
                        tracing::warn!(
                            "dropping an MQTT message: the device is not keeping up ({e})"
                        );
                    }
                }
                Polled::DisconnectSent => {
                    tracing::debug!("MQTT disconnect sent");
                    return;
                }
                Polled::Other => {}
                Polled::Done => {
                    tracing::debug!("every MQTT client handle is gone; stopping the event loop");
                    return;
                }
                Polled::Failed { failure, error } => {
                    let next = if connected {
                        tracing::warn!("lost MQTT broker {}: {error}", self.broker());
                        self.connection
                            .send_if_modified(|c| std::mem::replace(&mut c.connected, false));
                        connected = false;
                        self.rotation.lost()
                    } else if let Some(version) = self.choice().failed(failure) {
                        self.switch_to(version, &error);
                        // The other version is tried at once; only a second failure waits.
                        continue;
                    } else {
                        let failed = self.broker();
                        let next = self.rotation.failed();
                        let when = if next.after.is_zero() {
                            "now".to_owned()
                        } else {
                            format!("in {:?}", next.after)
                        };
                        tracing::warn!(
                            "cannot reach MQTT broker {failed}: {error}; trying {} {when}",
                            self.broker()
                        );
                        next
                    };
                    tokio::time::sleep(next.after).await;
                    self.aim();
                }
            }
        }
    }

    fn switch_to(&mut self, next: Protocol, error: &str) {
        self.speaking_v311
            .store(next == Protocol::V311, Ordering::Relaxed);
        if self.choice().explain_fallback() {
            tracing::warn!(
                "MQTT broker {} refused MQTT 5 ({error}); speaking MQTT 3.1.1 to it. \
                 MQTT 3.1.1 cannot announce campeer's Maximum Packet Size ({MAX_PACKET_BYTES} \
                 bytes), so the broker may forward a larger message; campeer then closes the \
                 connection rather than read it, and reconnects",
                self.broker()
            );
        } else {
            tracing::info!(
                "MQTT broker {} refused the connection ({error}); trying {next}",
                self.broker()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_5_first_and_3_1_1_when_the_broker_refuses_it() {
        let mut choice = ProtocolChoice::default();
        assert_eq!(choice.current(), Protocol::V5);
        assert_eq!(choice.failed(HandshakeFailure::Other), None);
        assert_eq!(
            choice.failed(HandshakeFailure::VersionRefused),
            Some(Protocol::V311)
        );
        assert!(choice.explain_fallback());
        assert!(!choice.explain_fallback(), "told once");
        choice.accepted();
        // Connected with 3.1.1: an outage keeps it.
        assert_eq!(choice.failed(HandshakeFailure::ClosedOnConnect), None);
        assert_eq!(choice.failed(HandshakeFailure::Other), None);
        assert_eq!(choice.current(), Protocol::V311);
        // A broker replaced by one that refuses 3.1.1.
        assert_eq!(
            choice.failed(HandshakeFailure::VersionRefused),
            Some(Protocol::V5)
        );
    }

    #[test]
    fn a_broker_that_closes_on_the_connect_is_tried_in_the_other_version_unless_it_took_this_one() {
        let mut silent = ProtocolChoice::default();
        assert_eq!(
            silent.failed(HandshakeFailure::ClosedOnConnect),
            None,
            "once: a broker still starting does that too"
        );
        assert_eq!(
            silent.failed(HandshakeFailure::ClosedOnConnect),
            Some(Protocol::V311)
        );
        // Closed by a broker still starting, then accepted: MQTT 5 stays.
        let mut starting = ProtocolChoice::default();
        assert_eq!(starting.failed(HandshakeFailure::ClosedOnConnect), None);
        assert_eq!(starting.failed(HandshakeFailure::Other), None);
        starting.accepted();
        assert_eq!(starting.current(), Protocol::V5);
        let mut restarting = ProtocolChoice::default();
        restarting.accepted();
        assert_eq!(restarting.failed(HandshakeFailure::ClosedOnConnect), None);
        assert_eq!(restarting.current(), Protocol::V5);
    }

    #[test]
    fn closes_count_only_in_a_row() {
        // A broker restarting: it resets one connection, refuses the next while down, resets
        // another as it comes up. Two closes, but not in a row: MQTT 5 stays.
        let mut restarting = ProtocolChoice::default();
        assert_eq!(restarting.failed(HandshakeFailure::ClosedOnConnect), None);
        assert_eq!(restarting.failed(HandshakeFailure::Other), None);
        assert_eq!(restarting.failed(HandshakeFailure::ClosedOnConnect), None);
        assert_eq!(restarting.current(), Protocol::V5);
        assert_eq!(
            restarting.failed(HandshakeFailure::ClosedOnConnect),
            Some(Protocol::V311),
            "two in a row"
        );
    }

    #[test]
    fn a_3_1_1_connack_read_as_mqtt_5_counts_as_a_refusal() {
        use rumqttc::v5::mqttbytes::v5::ConnectReturnCode;
        let refused = rumqttc::v5::ConnectionError::ConnectionRefused(
            ConnectReturnCode::UnsupportedProtocolVersion,
        );
        assert_eq!(
            HandshakeFailure::from(&refused),
            HandshakeFailure::VersionRefused
        );
        let reset = rumqttc::v5::ConnectionError::Io(std::io::ErrorKind::ConnectionReset.into());
        assert_eq!(
            HandshakeFailure::from(&reset),
            HandshakeFailure::ClosedOnConnect
        );
        let down = rumqttc::v5::ConnectionError::Io(std::io::ErrorKind::ConnectionRefused.into());
        assert_eq!(HandshakeFailure::from(&down), HandshakeFailure::Other);
        let password = rumqttc::ConnectionError::ConnectionRefused(
            rumqttc::ConnectReturnCode::BadUserNamePassword,
        );
        assert_eq!(HandshakeFailure::from(&password), HandshakeFailure::Other);
    }
}
