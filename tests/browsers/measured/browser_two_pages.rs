//! Two pages watching at once are served by one encoder, and each gets the whole stream: at
//! least 28 frames a second from 5 s after its first frame (Chromium sends transport-cc, so
//! campeer's own estimate follows each page's link; one held on the base layer must be tried
//! on the whole stream again, or it stays at 15 fps).

use common::*;
use serde_json::Value;
use std::time::Duration;

/// Frames a second `page` decoded from 5 s after its first decoded frame to its last
/// snapshot, from the browser script's snapshots (two a second).
fn settled_fps(lines: &[Value], page: usize) -> Option<f64> {
    let samples: Vec<(f64, f64)> = lines
        .iter()
        .filter(|v| v["page"] == page)
        .filter_map(|v| {
            let at = v["sinceLoadMs"].as_f64()?;
            let frames = v["stats"]["framesDecoded"].as_f64()?;
            Some((at, frames))
        })
        .collect();
    let (first, _) = samples.iter().find(|(_, frames)| *frames > 0.0)?;
    let (from_at, from_frames) = samples.iter().find(|(at, _)| *at >= first + 5_000.0)?;
    let (to_at, to_frames) = samples.last()?;
    (to_at > from_at).then(|| (to_frames - from_frames) / (to_at - from_at) * 1000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pages_one_encoder() {
    let _load = common::load::whole_machine();
    let device = start_device(zero_config_overrides("cam1")).await;
    let url = format!("http://{}/", device.http_addr());
    let browser = BrowserRun::start(&url, 2, 22, &screenshot_prefix("two-pages"));
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
    let lines = browser.finish(Duration::from_secs(40)).await;
    let rates: Vec<Option<f64>> = (0..2).map(|page| settled_fps(&lines, page)).collect();
    eprintln!("two Chromium pages: frames a second {rates:?}");
    for (page, rate) in rates.iter().enumerate() {
        assert!(
            rate.is_some_and(|fps| fps >= 28.0),
            "page {page} got {rate:?} frames a second"
        );
    }
    device.shutdown().await;
}
