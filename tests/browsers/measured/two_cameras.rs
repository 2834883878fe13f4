//! Two cameras in one campeer: each is a device of its own (its own status, sessions and
//! encoder) over one broker connection, one page server and one page. Two Chromium pages
//! each play their own camera (told apart by size: 640x480 and 320x240, two fake cameras),
//! the page lists both, each camera runs one pipeline for its one viewer. The second
//! camera's status names the first as the one whose broker connection it rides (`via`).

use campeer::config::FileConfig;
use common::fakecam::{bars_camera, mount_or_skip};
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_cameras_two_devices_two_pages() {
    let _load = common::load::whole_machine();
    let Some(first) = mount_or_skip(bars_camera(&[b"YUYV"])) else {
        return;
    };
    let Some(second) = mount_or_skip(bars_camera(&[b"YUYV"])) else {
        return;
    };
    let file = FileConfig::parse(&format!(
        "[video]\nsource = \"{}\"\n\n[[cameras]]\nid = \"yard\"\nsource = \"{}\"\nwidth = 320\nheight = 240\n",
        first.path().display(),
        second.path().display()
    ))
    .expect("a valid configuration");
    let overrides = campeer::config::Overrides {
        source: None,
        ..zero_config_overrides("porch")
    };
    let device = start_device_with(file, overrides).await;
    let page = format!("http://{}/", device.http_addr());
    let browser = BrowserRun::start_pages(
        &[
            format!("{page}?device=porch"),
            format!("{page}?device=yard"),
        ],
        20,
        &screenshot_prefix("two-cameras"),
    );
    for page in 0..2 {
        assert_page_plays(&browser, page, 45).await;
    }
    let porch = browser.latest(0).expect("page 0");
    let yard = browser.latest(1).expect("page 1");
    assert_eq!(porch["stats"]["device"], "porch");
    assert_eq!(yard["stats"]["device"], "yard");
    assert_eq!(
        (porch["videoWidth"].as_u64(), porch["videoHeight"].as_u64()),
        (Some(640), Some(480))
    );
    assert_eq!(
        (yard["videoWidth"].as_u64(), yard["videoHeight"].as_u64()),
        (Some(320), Some(240))
    );
    // Both pages list both cameras, each with its one viewer.
    assert!(
        browser
            .wait_for(Duration::from_secs(5), 0, |v| {
                let list = v["devices"].to_string();
                list.contains("porch") && list.contains("yard") && !list.contains("offline")
            })
            .await,
        "{:?}",
        browser.latest(0).map(|v| v["devices"].clone())
    );
    for id in ["porch", "yard"] {
        let stats = device.hub_stats_of(id).expect("a camera");
        assert_eq!(stats.pipeline_starts, 1, "{id}: one encoder");
        assert_eq!(stats.subscribers, 1, "{id}: its own viewer only");
        assert!(stats.frames_encoded > 30, "{id}: {stats:?}");
    }
    assert!(first.frames_served() > 30 && second.frames_served() > 30);
    assert_eq!(device.viewers(), 2);
    let broker = device.embedded_broker().expect("the embedded broker");
    let (host, port) = broker.client_address();
    let status = TopicWatcher::start_on_host(&host, port, "campeer/yard/status").await;
    assert!(
        status
            .wait_for_last(Duration::from_secs(5), |s| s["state"] == "online"
                && s["via"] == "porch"
                && s["video"]["width"] == 320)
            .await,
        "{:?}",
        status.last()
    );
    browser.finish(Duration::from_secs(30)).await;
    device.shutdown().await;
}
