//! Junk on the status topics (a retained `null`, values that are not a status, another
//! client's spoofed "offline" for the device being watched) breaks nothing in the page: it
//! lists only real devices, plays, and keeps a working call while its video flows.

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn junk_statuses_do_not_stop_the_page() {
    let _load = common::load::shared();
    let device = start_device(zero_config_overrides("cam1")).await;
    let broker_port = device
        .embedded_broker()
        .expect("embedded broker")
        .listen
        .port();
    let junk = TopicWatcher::start_on(broker_port, None, "campeer/nothing").await;
    for (device, payload) in [
        ("aaa", "null"),
        ("bbb", "\"online\""),
        ("ccc", "[1, 2]"),
        ("ddd", r#"{"state": {"online": true}}"#),
    ] {
        junk.publish_retained(&format!("campeer/{device}/status"), payload)
            .await;
    }
    let url = format!("http://{}/", device.http_addr());
    let browser = BrowserRun::start(&url, 1, 40, &screenshot_prefix("junk-status"));
    assert_page_plays(&browser, 0, 30).await;
    let seen = browser.latest(0).expect("a report");
    let devices = seen["devices"].to_string();
    assert!(devices.contains("cam1"), "{devices}");
    for junk_device in ["aaa", "bbb", "ccc", "ddd"] {
        assert!(
            !devices.contains(junk_device),
            "{junk_device} listed: {devices}"
        );
    }

    // Someone claims the device went offline while the page watches it.
    let before = seen["stats"]["framesDecoded"].as_u64().unwrap_or(0);
    junk.publish_retained("campeer/cam1/status", r#"{"state":"offline"}"#)
        .await;
    assert!(
        browser
            .wait_for(Duration::from_secs(15), 0, |v| {
                v["stats"]["framesDecoded"].as_u64().unwrap_or(0) >= before + 120
                    && v["stats"]["state"] == "playing"
            })
            .await,
        "the call stopped on a spoofed offline status: {:?}",
        browser.latest(0)
    );
    browser.close(Duration::from_secs(60)).await;
    device.shutdown().await;
}
