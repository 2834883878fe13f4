//! `cargo bench --bench page`: what a person sees in the built-in page, measured in headless
//! Chromium against the release binary in its zero-config form (embedded broker), on
//! loopback: the glass-to-glass latency the page reads from the test pattern (median and 90th
//! percentile over a minute) and the time from page load to the first picture; then, over five
//! fresh page loads with the encoder stopped in between (idle grace 0), the time from the
//! page's offer to its first picture.

use common::*;
use std::time::Duration;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (mut args_owned, http) = zero_config_args("bench");
    args_owned.extend(
        ["--log", "warn", "--idle-grace", "0"]
            .iter()
            .map(|s| (*s).to_owned()),
    );
    let args: Vec<&str> = args_owned.iter().map(String::as_str).collect();
    let _daemon = DaemonProcess::spawn(&args);
    assert!(wait_for_listener(http).await);
    let browser = BrowserRun::start(
        &format!("http://127.0.0.1:{http}/"),
        1,
        65,
        &screenshot_prefix("bench-page"),
    );
    let lines = browser.finish(Duration::from_secs(120)).await;
    let last = lines
        .iter()
        .rev()
        .find(|l| l.get("stats").is_some())
        .expect("page snapshots");
    let mut samples: Vec<i64> = lines
        .iter()
        .find_map(|l| l["latencySamples"].as_array())
        .expect("latency samples")
        .iter()
        .filter_map(|v| v.as_i64())
        .collect();
    assert!(!samples.is_empty(), "the page read no latency");
    // The last minute only.
    let minute = samples.len().saturating_sub(60 * 30);
    let mut window = samples.split_off(minute);
    window.sort_unstable();
    let at = |q: f64| window[((window.len() - 1) as f64 * q) as usize];
    println!("campeer page bench: 640x480@30, embedded broker, headless Chromium, loopback");
    println!(
        "glass-to-glass latency read by the page: median {} ms, p90 {} ms, min {} ms, max {} ms \
         ({} frames over the last minute)",
        at(0.5),
        at(0.9),
        window[0],
        window[window.len() - 1],
        window.len()
    );
    println!(
        "first picture after page load: {} ms; stream at the end: {}",
        last["stats"]["firstFrameMs"], last["overlay"]
    );

    let mut offer_to_picture = Vec::new();
    for round in 0..5 {
        // The last page's close stopped the encoder (idle grace 0): this offer starts it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let browser = BrowserRun::start(
            &format!("http://127.0.0.1:{http}/"),
            1,
            20,
            &screenshot_prefix(&format!("bench-page-first-{round}")),
        );
        let shown = browser
            .wait_for(Duration::from_secs(15), 0, |v| {
                v["stats"]["offerToFirstFrameMs"].is_number()
            })
            .await;
        assert!(shown, "no picture: {:?}", browser.latest(0));
        if let Some(ms) = browser
            .latest(0)
            .and_then(|v| v["stats"]["offerToFirstFrameMs"].as_i64())
        {
            offer_to_picture.push(ms);
        }
        browser.stop();
        browser.finish(Duration::from_secs(30)).await;
    }
    let runs = offer_to_picture.clone();
    offer_to_picture.sort_unstable();
    println!(
        "offer -> first picture in Chromium, encoder cold: median {} ms (runs: {runs:?} ms)",
        offer_to_picture[offer_to_picture.len() / 2]
    );
}
