//! Firefox as Debian ships it plays campeer's page. Its OpenH264 plugin is off, so its offer
//! has no H.264 at all: campeer answers VP8 from its VP8 encoder, and no H.264 is encoded.
//! Firefox runs in a viewer namespace routed through campeer's, as on a home network (it
//! gathers candidates only on its default route, never on loopback).

use common::network::{browser_lab, lan_overrides, require_lab, serve_in_namespace};
use common::*;
use std::time::Duration;

#[test]
fn firefox_as_shipped_plays_vp8() {
    let _load = common::load::shared();
    if !require_lab() {
        return;
    }
    let (lab, viewer_ns, campeer_ip) = browser_lab();
    serve_in_namespace(&lab.campeer_ns, move || async move {
        let device = start_device(lan_overrides("ff", &campeer_ip)).await;
        let url = format!("http://{}/", device.http_addr());
        let browser = BrowserRun::start_browser_in_namespace(
            Browser::Firefox { h264: false },
            &viewer_ns,
            &url,
            40,
            &screenshot_prefix("firefox-vp8"),
        );
        assert_page_plays(&browser, 0, 60).await;
        let shown = browser.latest(0).expect("a snapshot");
        assert_eq!(shown["stats"]["codec"], "VP8", "{shown}");
        assert_eq!(shown["videoWidth"], 640, "{shown}");
        // The timestamp squares read back: the picture is the live pattern, not a still.
        assert!(
            browser
                .wait_for(Duration::from_secs(10), 0, |v| v["stats"]["latencyMs"]
                    .as_f64()
                    .is_some())
                .await,
            "the page read no latency from the VP8 picture: {:?}",
            browser.latest(0)
        );
        let stats = device.hub_stats();
        assert!(stats.vp8.running, "{stats:?}");
        assert_eq!(stats.vp8.subscribers, 1, "{stats:?}");
        assert!(stats.vp8.frames_encoded > 60, "{stats:?}");
        assert_eq!(
            stats.frames_encoded, 0,
            "H.264 was encoded for nobody: {stats:?}"
        );
        let lines = browser.close(Duration::from_secs(30)).await;
        assert_eq!(page_errors(&lines), Vec::<String>::new());
        device.shutdown().await;
    });
}
