//! The embedded broker does what the status topic needs from a broker, for campeer itself and
//! for other devices that use it: retained messages, the last will when a device dies, and
//! the optional username and password.

use campeer::config::Overrides;
use common::*;
use std::time::Duration;

fn embedded_port(device: &campeer::device::DeviceHandle) -> u16 {
    device
        .embedded_broker()
        .expect("the embedded broker runs")
        .listen
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retained_status_and_last_will_work_on_the_embedded_broker() {
    let _load = common::load::shared();
    let host = start_device(zero_config_overrides("host")).await;
    let port = embedded_port(&host);

    // A late subscriber gets the host's retained status.
    let own = TopicWatcher::start_on(port, None, &status_topic("host")).await;
    assert!(
        own.wait_for_last(Duration::from_secs(10), |s| s["state"] == "online")
            .await
    );

    // Another campeer uses this broker, and is killed: its last will marks it offline.
    let url = format!("mqtt://127.0.0.1:{port}");
    let http = format!("127.0.0.1:{}", free_port());
    let mut other = DaemonProcess::spawn(&[
        "--broker",
        &url,
        "--device-id",
        "other",
        "--source",
        "test",
        "--ice-loopback-only",
        "--http-listen",
        &http,
    ]);
    let status = TopicWatcher::start_on(port, None, &status_topic("other")).await;
    assert!(
        status
            .wait_for_last(Duration::from_secs(20), |s| s["state"] == "online")
            .await
    );
    other.signal("KILL");
    other.wait(Duration::from_secs(5)).expect("killed");
    assert!(
        status
            .wait_for_last(Duration::from_secs(15), |s| s["state"] == "offline")
            .await,
        "no last will: {:?}",
        status.last()
    );
    let late = TopicWatcher::start_on(port, None, &status_topic("other")).await;
    assert!(
        late.wait_for_last(Duration::from_secs(5), |s| s["state"] == "offline")
            .await,
        "the last will was not retained"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_embedded_broker_can_require_a_password() {
    let _load = common::load::shared();
    let device = start_device(Overrides {
        embedded_broker_username: Some("watcher".into()),
        embedded_broker_password: Some("s3cret".into()),
        ..zero_config_overrides("locked")
    })
    .await;
    let port = embedded_port(&device);
    // campeer itself logs in: its status is there for a client with the password.
    let allowed =
        TopicWatcher::start_on(port, Some(("watcher", "s3cret")), &status_topic("locked")).await;
    assert!(
        allowed
            .wait_for_last(Duration::from_secs(10), |s| s["state"] == "online")
            .await
    );
    // Without it, or with a wrong one, the broker refuses the connection.
    for credentials in [None, Some(("watcher", "wrong"))] {
        let mut options = rumqttc::v5::MqttOptions::new("intruder", "127.0.0.1", port);
        if let Some((user, password)) = credentials {
            options.set_credentials(user, password);
        }
        let (_client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 8);
        let outcome = tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await;
        assert!(
            matches!(outcome, Ok(Err(_))),
            "connected with {credentials:?}: {outcome:?}"
        );
    }
    device.shutdown().await;
}

/// mosquitto's own command-line clients, in MQTT 3.1.1 (what Home Assistant, Node-RED and
/// paho speak unless told otherwise) and MQTT 5, on the embedded broker's one plain port:
/// each gets the retained status, and each one's publish reaches campeer, whose reply reaches
/// a subscriber of the other version. (Before: a 3.1.1 client was refused at every try.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mqtt_3_1_1_and_5_clients_share_the_embedded_brokers_port() {
    let _load = common::load::shared();
    let device = start_device(zero_config_overrides("both")).await;
    let port = embedded_port(&device).to_string();
    let status = status_topic("both");
    let mqtt = |program: &str, args: &[&str]| {
        let output = std::process::Command::new(program)
            .args(["-h", "127.0.0.1", "-p", &port])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program} (mosquitto-clients) did not run: {e}"));
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    for version in ["311", "5"] {
        let (ok, out, err) = mqtt(
            "mosquitto_sub",
            &["-V", version, "-t", &status, "-C", "1", "-W", "10"],
        );
        assert!(ok, "MQTT {version} subscriber: {err}");
        let retained: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON status");
        assert_eq!(retained["state"], "online", "MQTT {version}: {out}");
    }
    // A publish in each version, answered to a subscriber in the other.
    for (from, to) in [("311", "5"), ("5", "311")] {
        let session = format!("junk{from}");
        let out_topic = format!("campeer/both/out/{session}");
        let subscriber = {
            let port = port.clone();
            let to = to.to_owned();
            std::thread::spawn(move || {
                std::process::Command::new("mosquitto_sub")
                    .args(["-h", "127.0.0.1", "-p", &port, "-V", &to])
                    .args(["-t", &out_topic, "-C", "1", "-W", "10"])
                    .output()
            })
        };
        let mut answered = None;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (ok, _, err) = mqtt(
                "mosquitto_pub",
                &[
                    "-V",
                    from,
                    "-t",
                    &format!("campeer/both/in/{session}"),
                    "-m",
                    "junk",
                ],
            );
            assert!(ok, "MQTT {from} publisher: {err}");
            if subscriber.is_finished() {
                answered = subscriber.join().ok().and_then(Result::ok);
                break;
            }
        }
        let output = answered.expect("a reply within 5 s");
        let reply: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("a JSON reply");
        assert_eq!(
            reply["code"], "bad-request",
            "MQTT {from} -> campeer -> MQTT {to}: {reply}"
        );
    }
    device.shutdown().await;
}
