//! Two pages watching at once are served by one encoder.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pages_one_encoder() {
    let device = start_device(zero_config_overrides("cam1")).await;
    let url = format!("http://{}/", device.http_addr());
    let browser = BrowserRun::start(&url, 2, 14, &screenshot_prefix("two-pages"));
    for page in 0..2 {
        assert_page_plays(&browser, page, 60).await;
    }
    assert_eq!(device.viewers(), 2);
    let stats = device.hub_stats();
    assert_eq!(stats.pipeline_starts, 1);
    assert_eq!(stats.subscribers, 2);
    // Both list the device with two viewers.
    assert!(
        browser
            .wait_for(Duration::from_secs(5), 1, |v| v["devices"]
                .to_string()
                .contains("2 viewers"))
            .await
    );
    browser.finish(Duration::from_secs(30)).await;
    device.shutdown().await;
}
