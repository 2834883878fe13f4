//! A Chromium page and a Firefox page watching at once: one capture feeds one H.264 encoder
//! for Chromium and one VP8 encoder for Firefox, and each page plays its own codec.

use common::network::{browser_lab, lan_overrides, require_lab, serve_in_namespace};
use common::*;
use std::time::Duration;

#[test]
fn chromium_gets_h264_and_firefox_vp8_from_one_capture() {
    let _load = common::load::whole_machine();
    if !require_lab() {
        return;
    }
    let (lab, viewer_ns, campeer_ip) = browser_lab();
    serve_in_namespace(&lab.campeer_ns, move || async move {
        let device = start_device(lan_overrides("both", &campeer_ip)).await;
        let url = format!("http://{}/", device.http_addr());
        let chromium = BrowserRun::start_browser_in_namespace(
            Browser::Chromium,
            &viewer_ns,
            &url,
            50,
            &screenshot_prefix("both-chromium"),
        );
        let firefox = BrowserRun::start_browser_in_namespace(
            Browser::Firefox { h264: false },
            &viewer_ns,
            &url,
            50,
            &screenshot_prefix("both-firefox"),
        );
        assert_page_plays(&chromium, 0, 60).await;
        assert_page_plays(&firefox, 0, 60).await;
        let codec = |browser: &BrowserRun| browser.latest(0).map(|v| v["stats"]["codec"].clone());
        assert_eq!(codec(&chromium), Some("H264".into()));
        assert_eq!(codec(&firefox), Some("VP8".into()));
        // Both keep playing side by side.
        let frames = |browser: &BrowserRun| {
            browser
                .latest(0)
                .and_then(|v| v["stats"]["framesDecoded"].as_u64())
                .unwrap_or(0)
        };
        let (c0, f0) = (frames(&chromium), frames(&firefox));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(frames(&chromium) >= c0 + 45, "Chromium stalled");
        assert!(frames(&firefox) >= f0 + 45, "Firefox stalled");

        let stats = device.hub_stats();
        assert_eq!(stats.pipeline_starts, 1, "one capture: {stats:?}");
        assert_eq!(stats.subscribers, 2, "{stats:?}");
        assert_eq!(stats.vp8.subscribers, 1, "{stats:?}");
        assert!(stats.vp8.running && stats.frames_encoded > 60, "{stats:?}");
        assert_eq!(device.viewers(), 2);
        for browser in [&chromium, &firefox] {
            browser.stop();
        }
        let lines = [
            chromium.finish(Duration::from_secs(30)).await,
            firefox.finish(Duration::from_secs(30)).await,
        ];
        for lines in &lines {
            assert_eq!(page_errors(lines), Vec::<String>::new());
        }
        device.shutdown().await;
    });
}
