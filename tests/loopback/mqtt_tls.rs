//! campeer reaches its broker over TLS (mqtts://): the broker's certificate is checked against
//! `mqtt.ca_file`, campeer presents a client certificate and logs in with a password. Without
//! the client certificate, with a CA that does not vouch for the broker, or with a wrong
//! password, it does not get in. Viewers use the broker's plain listener meanwhile.

use campeer::config::{Config, FileConfig, Overrides};
use common::tls::TestCa;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const USER: &str = "campeer";
const PASSWORD: &str = "device-secret";

struct TlsBroker {
    broker: Broker,
    tls_port: u16,
    ca: TestCa,
    _dir: tempfile::TempDir,
}

/// mosquitto with a plain listener for viewers and a TLS listener that wants a client
/// certificate from the test CA and the device's password.
fn tls_broker() -> TlsBroker {
    let dir = tempfile::tempdir().expect("temp dir");
    // mosquitto started as root reads its files as the mosquitto user.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ca = TestCa::create(dir.path(), "127.0.0.1");
    let passwords = dir.path().join("passwd");
    let status = std::process::Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&passwords)
        .args([USER, PASSWORD])
        .status()
        .expect("run mosquitto_passwd");
    assert!(status.success());
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let tls_port = free_port();
    let show = |p: &Path| p.display().to_string();
    let (ca_cert, cert, key) = (
        show(&ca.ca_cert),
        show(&ca.server_cert),
        show(&ca.server_key),
    );
    let passwords = show(&passwords);
    let broker = Broker::start_custom(|port| {
        format!(
            "per_listener_settings true\npersistence false\nlog_dest stderr\nlog_type error\n\
             listener {port} 127.0.0.1\nallow_anonymous true\n\
             listener {tls_port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n\
             cafile {ca_cert}\ncertfile {cert}\nkeyfile {key}\nrequire_certificate true\n"
        )
    });
    TlsBroker {
        broker,
        tls_port,
        ca,
        _dir: dir,
    }
}

fn config(broker: &TlsBroker, device: &str, mqtt_toml: &str) -> Config {
    let file = FileConfig::parse(&format!(
        "[mqtt]\nbroker = \"mqtts://127.0.0.1:{}\"\nusername = \"{USER}\"\n{mqtt_toml}",
        broker.tls_port
    ))
    .expect("a valid config file");
    let overrides = Overrides {
        broker: Vec::new(),
        ..overrides(&broker.broker, device)
    };
    Config::resolve(file, overrides).expect("a valid config")
}

async fn connects(config: Config) -> bool {
    init_logging();
    let device = campeer::device::start(config)
        .await
        .expect("campeer starts");
    let mut summary = device.health().summary();
    let connected = tokio::time::timeout(
        Duration::from_secs(8),
        summary.wait_for(|s| s.broker_connected),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    device.shutdown().await;
    connected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn campeer_serves_over_mqtts_with_a_client_certificate() {
    let _load = common::load::shared();
    let broker = tls_broker();
    let (cert, key) = broker.ca.client("campeer-device");
    let settings = format!(
        "password = \"{PASSWORD}\"\nca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
        broker.ca.ca_cert.display(),
        cert.display(),
        key.display()
    );
    let device = campeer::device::start(config(&broker, "cam1", &settings))
        .await
        .expect("campeer starts");
    let status = TopicWatcher::start(&broker.broker, &status_topic("cam1")).await;
    assert!(
        status
            .wait_for_last(Duration::from_secs(10), |s| s["state"] == "online")
            .await,
        "campeer did not come online over TLS"
    );
    let viewer = TestViewer::join(&broker.broker, "cam1", "alice").await;
    assert!(
        viewer
            .wait_for_more_frames(10, Duration::from_secs(20))
            .await
    );
    viewer.close().await;
    device.shutdown().await;

    // Each missing or wrong piece keeps campeer out.
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger = TestCa::create(stranger_dir.path(), "127.0.0.1");
    let cases = [
        (
            "no client certificate",
            format!(
                "password = \"{PASSWORD}\"\nca_file = \"{}\"\n",
                broker.ca.ca_cert.display()
            ),
        ),
        (
            "a CA that does not vouch for the broker",
            settings.replace(
                &broker.ca.ca_cert.display().to_string(),
                &stranger.ca_cert.display().to_string(),
            ),
        ),
        (
            "a wrong password",
            settings.replace(PASSWORD, "not-the-password"),
        ),
    ];
    // All at once: each waits out the same 8 s for a connection that must not come.
    let mut attempts = tokio::task::JoinSet::new();
    for (n, (what, toml)) in cases.into_iter().enumerate() {
        let config = config(&broker, &format!("cam{}", n + 2), &toml);
        attempts.spawn(async move { (what, connects(config).await) });
    }
    while let Some(attempt) = attempts.join_next().await {
        let (what, connected) = attempt.expect("an attempt to connect");
        assert!(!connected, "campeer got in with {what}");
    }
    assert!(
        connects(config(&broker, "cam9", &settings)).await,
        "the good settings still work"
    );
}
