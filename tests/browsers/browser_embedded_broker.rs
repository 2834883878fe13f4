//! Zero configuration: campeer with its embedded broker and built-in page, watched in headless
//! Chromium. The page finds the device on its own, plays H.264 at 640x480, and reads the
//! latency from the test pattern, and shows campeer's estimate of its link and the rate sent
//! over it (from the stats topic). Closing the tab hangs up at once, even when the page runs no
//! more timers as it goes.

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chromium_plays_from_the_embedded_broker() {
    let _load = common::load::shared();
    let device = start_device(zero_config_overrides("cam1")).await;
    assert!(device.embedded_broker().is_some());
    let url = format!("http://{}/", device.http_addr());
    let shots = screenshot_prefix("embedded-broker");
    // The page's hangup must leave as pagehide fires: a page being torn down runs no more
    // timers, so the script holds the page's thread for longer than the hangup may take.
    let frozen = Duration::from_secs(4);
    let browser = BrowserRun::start_freezing_at_close(&url, UNTIL_CLOSED_SECS, &shots, frozen);

    assert_page_plays(&browser, 0, 30).await;
    let first = browser.latest(0).unwrap()["stats"]["framesDecoded"]
        .as_u64()
        .unwrap();
    assert!(
        browser
            .wait_for(Duration::from_secs(10), 0, |v| {
                v["stats"]["framesDecoded"].as_u64().unwrap_or(0) >= first + 30
                    && v["stats"]["latencyMs"].is_number()
            })
            .await,
        "frames stopped or no latency: {:?}",
        browser.latest(0)
    );
    let seen = browser.latest(0).unwrap();
    assert_eq!(seen["stats"]["width"], 640);
    assert_eq!(seen["stats"]["height"], 480);
    assert_eq!(seen["stats"]["codec"], "H264");
    let latency = seen["stats"]["latencyMs"].as_f64().unwrap();
    assert!((0.0..5_000.0).contains(&latency), "latency {latency} ms");
    assert!(seen["overlay"].as_str().unwrap().contains("latency"));
    // Chromium sends transport-wide feedback; campeer's estimate reaches the page.
    assert!(
        browser
            .wait_for(Duration::from_secs(10), 0, |v| {
                v["stats"]["estimateKbps"].as_u64().unwrap_or(0) > 0
                    && v["stats"]["sentKbps"].as_u64().unwrap_or(0) > 0
                    && v["overlay"].as_str().unwrap_or("").contains("link ")
            })
            .await,
        "no link estimate on the page: {:?}",
        browser.latest(0)
    );
    assert!(seen["broker"].as_str().unwrap().starts_with("connected"));
    let devices = seen["devices"].to_string();
    assert!(
        devices.contains("cam1") && devices.contains("online"),
        "{devices}"
    );
    assert_eq!(device.viewers(), 1);

    browser.stop();
    assert!(
        wait_for(Duration::from_secs(30), || browser.saw("pagehideFrozen")).await,
        "the script never fired pagehide"
    );
    // Closing the tab hangs up: the session goes at once, while the page is still held (not
    // when its timers run again, nor after the 30 s session timeout).
    assert!(
        wait_for(frozen / 2, || device.viewers() == 0).await,
        "the page did not hang up as it went"
    );
    let lines = browser.finish(Duration::from_secs(30)).await;
    assert!(
        lines.iter().all(|l| l.get("pageerror").is_none()),
        "page errors: {lines:?}"
    );
    assert!(std::path::Path::new(&format!("{shots}-0.png")).exists());
    device.shutdown().await;
}
