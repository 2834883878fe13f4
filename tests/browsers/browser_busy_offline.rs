//! What the page says when things go wrong: a busy device shows as busy, and a device that
//! goes offline shows as offline.

use campeer::config::Overrides;
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn busy_then_offline() {
    let _load = common::load::shared();
    // An external broker keeps the page connected while the device goes away.
    let ws_port = free_port();
    let broker = Broker::start_with(&format!(
        "listener {ws_port} 127.0.0.1\nprotocol websockets\nsocket_domain ipv4\n"
    ));
    let device = start_device(Overrides {
        max_viewers: Some(1),
        broker_ws_url: Some(format!("ws://127.0.0.1:{ws_port}")),
        ..overrides(&broker, "cam3")
    })
    .await;
    let url = format!("http://{}/", device.http_addr());
    let browser = BrowserRun::start(
        &url,
        2,
        UNTIL_CLOSED_SECS,
        &screenshot_prefix("busy-offline"),
    );

    // One page gets the only place; the other is told the device is busy.
    let playing = |v: &serde_json::Value| is_playing(v, 10);
    let busy = |v: &serde_json::Value| {
        v["stats"]["state"] == "busy" && v["message"].as_str().unwrap_or("").contains("busy")
    };
    assert!(
        wait_for(Duration::from_secs(30), || {
            let (a, b) = (browser.latest(0), browser.latest(1));
            match (a, b) {
                (Some(a), Some(b)) => (playing(&a) && busy(&b)) || (busy(&a) && playing(&b)),
                _ => false,
            }
        })
        .await,
        "expected one playing and one busy page: {:?} / {:?}",
        browser.latest(0),
        browser.latest(1)
    );

    device.shutdown().await;
    for page in 0..2 {
        assert!(
            browser
                .wait_for(Duration::from_secs(10), page, |v| {
                    v["message"].as_str().unwrap_or("").contains("offline")
                        && v["devices"].to_string().contains("offline")
                })
                .await,
            "page {page} does not show the device offline: {:?}",
            browser.latest(page)
        );
    }
    browser.close(Duration::from_secs(40)).await;
}
