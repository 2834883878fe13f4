//! Firefox with its H.264 turned on (through the system's FFmpeg, as a user can in
//! about:config) offers H.264 first among its codecs: campeer answers H.264, as it does for
//! every browser that can take it, and starts no VP8 encoder.

use common::network::{browser_lab, lan_overrides, require_lab, serve_in_namespace};
use common::*;
use std::time::Duration;

#[test]
fn firefox_with_h264_gets_h264() {
    let _load = common::load::shared();
    if !require_lab() {
        return;
    }
    let (lab, viewer_ns, campeer_ip) = browser_lab();
    serve_in_namespace(&lab.campeer_ns, move || async move {
        let device = start_device(lan_overrides("ffh", &campeer_ip)).await;
        let url = format!("http://{}/", device.http_addr());
        let browser = BrowserRun::start_browser_in_namespace(
            Browser::Firefox { h264: true },
            &viewer_ns,
            &url,
            40,
            &screenshot_prefix("firefox-h264"),
        );
        assert_page_plays(&browser, 0, 60).await;
        let shown = browser.latest(0).expect("a snapshot");
        assert_eq!(shown["stats"]["codec"], "H264", "{shown}");
        let stats = device.hub_stats();
        assert!(stats.frames_encoded > 60, "{stats:?}");
        assert!(!stats.vp8.running, "{stats:?}");
        assert_eq!(
            stats.vp8.frames_encoded, 0,
            "VP8 was encoded for nobody: {stats:?}"
        );
        let lines = browser.close(Duration::from_secs(30)).await;
        assert_eq!(page_errors(&lines), Vec::<String>::new());
        device.shutdown().await;
    });
}
