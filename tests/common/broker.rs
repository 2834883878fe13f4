//! A real mosquitto on a loopback port, and MQTT clients that watch topics and wait for a device to come online.

use crate::{free_port, wait_for};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The topic prefix every test device uses (campeer's default).
pub const PREFIX: &str = "campeer";

fn mosquitto_binary() -> PathBuf {
    for candidate in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "mosquitto is not installed; the README's test command installs it (apt-get install mosquitto)"
    );
}

/// A real mosquitto on a free loopback port, stopped on drop.
pub struct Broker {
    pub port: u16,
    child: Child,
    conf: PathBuf,
    _dir: tempfile::TempDir,
}

impl Broker {
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// Extra lines go into the broker's configuration (an acl_file, say).
    pub fn start_with(extra_config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 set_tcp_nodelay true\nlog_dest stderr\nlog_type error\nlog_type warning\n{extra_config}\n"
            ),
        )
        .expect("write mosquitto.conf");
        let child = spawn_mosquitto(&conf, port);
        Self {
            port,
            child,
            conf,
            _dir: dir,
        }
    }

    /// A broker with a configuration of the test's own, given the free port it should put its
    /// first listener on.
    pub fn start_custom(conf_text: impl FnOnce(u16) -> String) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(&conf, conf_text(port)).expect("write mosquitto.conf");
        let child = spawn_mosquitto(&conf, port);
        Self {
            port,
            child,
            conf,
            _dir: dir,
        }
    }

    /// Kills the broker (clients see the connection drop), waits `down`, and starts it again on
    /// the same port. Retained messages do not survive (persistence is off).
    pub fn restart(&mut self, down: Duration) {
        self.kill();
        std::thread::sleep(down);
        self.start_again();
    }

    /// Kills the broker; clients see the connection drop. [`Broker::start_again`] brings it
    /// back on the same port, with nothing retained.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn start_again(&mut self) {
        self.child = spawn_mosquitto(&self.conf, self.port);
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

fn spawn_mosquitto(conf: &Path, port: u16) -> Child {
    let child = Command::new(mosquitto_binary())
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start mosquitto");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A message as it came: its topic and payload.
pub type TopicPayload = (String, Vec<u8>);

/// Watches one topic and keeps every payload received on it.
pub struct TopicWatcher {
    client: AsyncClient,
    pub messages: Arc<Mutex<Vec<Value>>>,
    /// The topic each of `messages` came on (the filter may have wildcards).
    pub topics: Arc<Mutex<Vec<String>>>,
    /// Every payload that was not JSON (a JPEG, say), with its topic.
    pub others: Arc<Mutex<Vec<TopicPayload>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TopicWatcher {
    pub async fn start(broker: &Broker, topic: &str) -> Self {
        Self::start_as(broker, &format!("watch-{}", rand::random::<u32>()), topic).await
    }

    /// Connects with the given client id.
    pub async fn start_as(broker: &Broker, id: &str, topic: &str) -> Self {
        Self::connect(broker.port, id, None, topic).await
    }

    /// Watches a topic on any broker listening on a loopback port, with optional credentials.
    pub async fn start_on(port: u16, credentials: Option<(&str, &str)>, topic: &str) -> Self {
        let id = format!("watch-{}", rand::random::<u32>());
        Self::connect(port, &id, credentials, topic).await
    }

    /// Watches a topic on a broker at `host` (inside a test's network namespace, say).
    pub async fn start_on_host(host: &str, port: u16, topic: &str) -> Self {
        let id = format!("watch-{}", rand::random::<u32>());
        Self::connect_at(host, port, &id, None, topic).await
    }

    async fn connect(port: u16, id: &str, credentials: Option<(&str, &str)>, topic: &str) -> Self {
        Self::connect_at("127.0.0.1", port, id, credentials, topic).await
    }

    async fn connect_at(
        host: &str,
        port: u16,
        id: &str,
        credentials: Option<(&str, &str)>,
        topic: &str,
    ) -> Self {
        let messages = Arc::new(Mutex::new(Vec::new()));
        let topics = Arc::new(Mutex::new(Vec::new()));
        let others = Arc::new(Mutex::new(Vec::new()));
        let (sink, topic_sink, other_sink) = (
            Arc::clone(&messages),
            Arc::clone(&topics),
            Arc::clone(&others),
        );
        let (client, task) =
            subscribe_at(host, port, id, credentials, topic, move |topic, payload| {
                match serde_json::from_slice::<Value>(payload) {
                    Ok(value) => {
                        // One lock order, so the two lists stay in step.
                        let mut messages = sink.lock().unwrap();
                        topic_sink.lock().unwrap().push(topic);
                        messages.push(value);
                    }
                    Err(_) => other_sink.lock().unwrap().push((topic, payload.to_vec())),
                }
            })
            .await;
        Self {
            client,
            messages,
            topics,
            others,
            task,
        }
    }

    /// Publishes a retained message (QoS 1) with this watcher's own connection.
    pub async fn publish_retained(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, true, payload.into())
            .await
            .expect("queue a publish");
    }

    /// Publishes with this watcher's own connection (QoS 1, not retained).
    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .expect("queue a publish");
    }

    pub fn count(&self, want: impl Fn(&Value) -> bool) -> usize {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|v| want(v))
            .count()
    }

    /// Like [`TopicWatcher::count`], for the messages on topics starting with `prefix` only.
    pub fn count_on(&self, prefix: &str, want: impl Fn(&Value) -> bool) -> usize {
        let messages = self.messages.lock().unwrap();
        let topics = self.topics.lock().unwrap();
        topics
            .iter()
            .zip(messages.iter())
            .filter(|(topic, value)| topic.starts_with(prefix) && want(value))
            .count()
    }

    pub fn last(&self) -> Option<Value> {
        self.messages.lock().unwrap().last().cloned()
    }

    pub async fn wait_for_last(&self, limit: Duration, want: impl Fn(&Value) -> bool) -> bool {
        wait_for(limit, || self.last().is_some_and(|v| want(&v))).await
    }
}

impl Drop for TopicWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects to the broker at `host` as `client_id` (with MQTT credentials if given),
/// subscribes to `topic` and waits for the broker to confirm, then hands every JSON payload
/// received to `on_message` until the client disconnects.
pub(crate) async fn subscribe_json_at(
    host: &str,
    port: u16,
    client_id: &str,
    credentials: Option<(&str, &str)>,
    topic: &str,
    mut on_message: impl FnMut(String, Value) + Send + 'static,
) -> (AsyncClient, tokio::task::JoinHandle<()>) {
    subscribe_at(
        host,
        port,
        client_id,
        credentials,
        topic,
        move |topic, payload| {
            if let Ok(value) = serde_json::from_slice::<Value>(payload) {
                on_message(topic, value);
            }
        },
    )
    .await
}

/// Like [`subscribe_json_at`], handing on every payload as it came (a JPEG, say).
pub(crate) async fn subscribe_at(
    host: &str,
    port: u16,
    client_id: &str,
    credentials: Option<(&str, &str)>,
    topic: &str,
    mut on_message: impl FnMut(String, &[u8]) + Send + 'static,
) -> (AsyncClient, tokio::task::JoinHandle<()>) {
    let mut options = MqttOptions::new(client_id, host, port);
    options.set_max_packet_size(Some(256 * 1024));
    if let Some((user, password)) = credentials {
        options.set_credentials(user, password);
    }
    let (client, mut eventloop) = AsyncClient::new(options, 256);
    client
        .subscribe(topic, QoS::AtLeastOnce)
        .await
        .expect("queue subscribe");
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut subscribed_tx = Some(subscribed_tx);
        for _ in 0..10_000_000 {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    on_message(String::from_utf8_lossy(&p.topic).into_owned(), &p.payload);
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .expect("the broker acknowledges the subscription")
        .expect("subscription acknowledged");
    (client, task)
}

/// Waits for `device`'s retained status to say online, so that an offer is not sent before
/// the device listens. A device that never comes online is left for the caller's own
/// assertions to report (some tests offer to an absent device on purpose).
pub async fn wait_until_online_at(host: &str, port: u16, device: &str) -> bool {
    let status = TopicWatcher::start_on_host(host, port, &status_topic(device)).await;
    let online = status
        .wait_for_last(Duration::from_secs(20), |s| s["state"] == "online")
        .await;
    if !online {
        eprintln!("{device} did not say it was online within 20 s; offering anyway");
    }
    online
}

/// [`wait_until_online_at`] on a loopback broker.
pub async fn wait_until_online(broker: &Broker, device: &str) -> bool {
    wait_until_online_at("127.0.0.1", broker.port, device).await
}

pub fn status_topic(device: &str) -> String {
    format!("{PREFIX}/{device}/status")
}
