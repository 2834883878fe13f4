//! A broken microphone as a person sees it: the page plays the video, the device list says the
//! microphone failed, and the overlay says there is no sound and why.

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_plays_video_and_says_the_microphone_failed() {
    let _load = common::load::shared();
    let mut flags = zero_config_overrides("cam1");
    flags.audio_source = Some("campeer-no-such-microphone".into());
    let device = start_device(flags).await;
    let url = format!("http://{}/", device.http_addr());
    let browser = BrowserRun::start(
        &url,
        1,
        UNTIL_CLOSED_SECS,
        &screenshot_prefix("microphone-failed"),
    );

    assert_page_plays(&browser, 0, 30).await;
    assert!(
        browser
            .wait_for(Duration::from_secs(10), 0, |v| {
                v["overlay"]
                    .as_str()
                    .is_some_and(|o| o.contains("no sound: the microphone failed"))
            })
            .await,
        "the overlay does not say why there is no sound: {:?}",
        browser.latest(0)
    );
    let seen = browser.latest(0).unwrap();
    let overlay = seen["overlay"].as_str().unwrap_or_default();
    assert!(overlay.contains("campeer-no-such-microphone"), "{overlay}");
    assert!(seen["devices"].to_string().contains("microphone failed"));
    assert_eq!(seen["stats"]["codec"], "H264");

    let lines = browser.close(Duration::from_secs(30)).await;
    assert!(lines.iter().all(|l| l.get("pageerror").is_none()));
    device.shutdown().await;
}
