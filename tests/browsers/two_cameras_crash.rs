//! Two cameras in one campeer share one broker connection, so only the first camera's status
//! carries the connection's last will. When campeer is killed (SIGKILL: no clean offline
//! statuses), the broker marks the first camera offline; the second camera's retained status
//! still says online, with `via` naming the first, and the page shows both offline.

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_campeer_takes_every_camera_offline_on_the_page() {
    let _load = common::load::shared();
    let ws_port = free_port();
    // mosquitto 2.0 ignores a websockets listener's bind address unless socket_domain is set.
    let broker = Broker::start_with(&format!(
        "listener {ws_port} 127.0.0.1\nprotocol websockets\nsocket_domain ipv4\n"
    ));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("campeer.toml");
    std::fs::write(
        &config,
        "[[cameras]]\nid = \"yard\"\nsource = \"test\"\nwidth = 320\nheight = 240\n",
    )
    .expect("write the configuration");
    let mut args = binary_args(&broker, "porch", "test");
    let page = format!("http://{}/?device=yard", args[1]);
    args.extend([
        "--config".to_owned(),
        config.display().to_string(),
        "--broker-ws-url".to_owned(),
        format!("ws://127.0.0.1:{ws_port}"),
    ]);
    let porch = TopicWatcher::start(&broker, &status_topic("porch")).await;
    let yard = TopicWatcher::start(&broker, &status_topic("yard")).await;
    let daemon = DaemonProcess::spawn(&args);
    for (name, status) in [("porch", &porch), ("yard", &yard)] {
        assert!(
            status
                .wait_for_last(Duration::from_secs(20), |s| s["state"] == "online")
                .await,
            "{name} never came online"
        );
    }
    assert_eq!(yard.last().unwrap()["via"], "porch");
    assert!(porch.last().unwrap().get("via").is_none());

    let browser = BrowserRun::start(&page, 1, 30, &screenshot_prefix("two-cameras-crash"));
    assert!(
        browser
            .wait_for(Duration::from_secs(20), 0, |v| is_playing(v, 30)
                && v["stats"]["device"] == "yard")
            .await,
        "the page never played yard: {:?}",
        browser.latest(0)
    );

    daemon.signal("KILL");
    assert!(
        porch
            .wait_for_last(Duration::from_secs(10), |s| s["state"] == "offline")
            .await,
        "the last will did not mark porch offline"
    );
    // yard's own retained status still says online: only `via` tells the page otherwise.
    assert_eq!(yard.last().unwrap()["state"], "online");
    assert!(
        browser
            .wait_for(Duration::from_secs(10), 0, |v| {
                let devices = v["devices"].as_array().cloned().unwrap_or_default();
                devices.len() == 2
                    && devices
                        .iter()
                        .all(|d| d.as_str().is_some_and(|d| d.contains("offline")))
            })
            .await,
        "the page does not show both cameras offline: {:?}",
        browser.latest(0).map(|v| v["devices"].clone())
    );
    browser.close(Duration::from_secs(40)).await;
}
