//! With an external broker (mosquitto with a WebSocket listener beside its plain one), the page
//! uses the WebSocket URL from the configuration and plays the stream.

use campeer::config::Overrides;
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chromium_plays_through_mosquitto_websockets() {
    let _load = common::load::shared();
    let ws_port = free_port();
    // mosquitto 2.0 ignores a websockets listener's bind address unless socket_domain is set.
    let broker = Broker::start_with(&format!(
        "listener {ws_port} 127.0.0.1\nprotocol websockets\nsocket_domain ipv4\n"
    ));
    let device = start_device(Overrides {
        broker_ws_url: Some(format!("ws://127.0.0.1:{ws_port}")),
        ..overrides(&broker, "cam2")
    })
    .await;
    assert!(device.embedded_broker().is_none());
    let url = format!("http://{}/", device.http_addr());
    let browser = BrowserRun::start(&url, 1, UNTIL_CLOSED_SECS, &screenshot_prefix("mosquitto"));
    assert!(
        browser
            .wait_for(Duration::from_secs(30), 0, |v| is_playing(v, 60)
                && v["stats"]["latencyMs"].is_number())
            .await,
        "the page never played: {:?}",
        browser.latest(0)
    );
    let seen = browser.latest(0).unwrap();
    assert_eq!(seen["stats"]["codec"], "H264");
    assert_eq!(
        (seen["videoWidth"].as_u64(), seen["videoHeight"].as_u64()),
        (Some(640), Some(480))
    );
    assert!(
        seen["broker"]
            .as_str()
            .unwrap()
            .contains(&ws_port.to_string())
    );
    browser.close(Duration::from_secs(30)).await;
    device.shutdown().await;
}
