//! Sound in the browser: with the test tone as its audio source, the page asks for audio,
//! Chromium receives and decodes Opus alongside the H.264 video, the overlay says so, and the
//! device list shows that the device has sound.

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chromium_plays_the_test_tone_with_the_video() {
    let _load = common::load::shared();
    let mut flags = zero_config_overrides("cam1");
    flags.audio_source = Some("test".into());
    let device = start_device(flags).await;
    let url = format!("http://{}/", device.http_addr());
    let shots = screenshot_prefix("audio");
    let browser = BrowserRun::start(&url, 1, UNTIL_CLOSED_SECS, &shots);

    assert_page_plays(&browser, 0, 30).await;
    assert!(
        browser
            .wait_for(Duration::from_secs(10), 0, |v| {
                v["stats"]["audioSamples"].as_u64().unwrap_or(0) >= 48_000
            })
            .await,
        "Chromium decoded no second of sound: {:?}",
        browser.latest(0)
    );
    let seen = browser.latest(0).unwrap();
    assert_eq!(seen["stats"]["audioCodec"], "opus");
    assert_eq!(seen["stats"]["codec"], "H264");
    // Measured in the page with Web Audio from the received track: the test tone, not
    // silence, at its strongest near 440 Hz (the analyser's bins are 6 Hz wide).
    assert!(
        browser
            .wait_for(Duration::from_secs(5), 0, |v| v["stats"]["audioPeakHz"]
                .is_number())
            .await,
        "no level measured: {:?}",
        browser.latest(0)
    );
    let seen = browser.latest(0).unwrap();
    let level = seen["stats"]["audioLevel"].as_f64().unwrap_or(0.0);
    assert!(
        level > 0.02,
        "the tone is audible, not silence: level {level}"
    );
    let peak = seen["stats"]["audioPeakHz"].as_f64().unwrap_or(0.0);
    assert!((425.0..=455.0).contains(&peak), "strongest at {peak} Hz");
    let overlay = seen["overlay"].as_str().unwrap_or_default();
    assert!(overlay.contains("opus sound"), "{overlay}");
    let devices = seen["devices"].to_string();
    assert!(devices.contains("sound"), "{devices}");
    let audio = device.audio_stats().expect("the device has audio");
    assert_eq!(audio.subscribers, 1);

    let lines = browser.close(Duration::from_secs(30)).await;
    assert!(
        lines.iter().all(|l| l.get("pageerror").is_none()),
        "page errors: {lines:?}"
    );
    device.shutdown().await;
}
