//! A WHEP player library from npm (Eyevinn's @eyevinn/webrtc-player), in headless Chromium on
//! a page of another origin, plays campeer through its WHEP endpoint with a bearer token: the
//! cross-origin POST (after its CORS preflight) gets `201`, the video element shows the test
//! pattern at 640x480 and keeps decoding, the status counts the player as a viewer, and the
//! library's unload (DELETE) frees the place.

use campeer::config::Overrides;
use common::whep::play_in_chromium;
use common::*;
use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eyevinn_player_watches_through_whep_in_chromium() {
    let _load = common::load::shared();
    let device = start_device(Overrides {
        whep_token: Some("s3cret".into()),
        ..zero_config_overrides("cam1")
    })
    .await;
    let url = format!("http://{}/whep/cam1", device.http_addr());

    // The status must count the player while it plays.
    let screenshot = format!("{}.png", screenshot_prefix("whep-chromium"));
    let play = play_in_chromium(&url, Some("s3cret"), 40, 90, &screenshot);
    tokio::pin!(play);
    let mut viewers_seen = 0;
    let lines = loop {
        tokio::select! {
            lines = &mut play => break lines,
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                viewers_seen = viewers_seen.max(device.viewers());
            }
        }
    };

    let requests: Vec<(String, u64)> = lines
        .iter()
        .filter_map(|line| {
            Some((
                line.get("request")?.as_str()?.to_owned(),
                line.get("status")?.as_u64()?,
            ))
        })
        .collect();
    assert!(
        requests.contains(&("POST".to_owned(), 201)),
        "the player's offer was not answered: {requests:?}\n{lines:?}"
    );
    let last = lines
        .iter()
        .rev()
        .find(|line| line.get("framesDecoded").is_some())
        .cloned()
        .unwrap_or(Value::Null);
    assert!(
        last["framesDecoded"].as_u64().unwrap_or(0) >= 90,
        "the page did not play: {last}\n{lines:?}"
    );
    assert_eq!(
        (last["videoWidth"].as_u64(), last["videoHeight"].as_u64()),
        (Some(640), Some(480))
    );
    assert!(page_errors(&lines).is_empty(), "{:?}", page_errors(&lines));
    assert_eq!(viewers_seen, 1, "the status did not count the WHEP player");
    assert!(
        requests.contains(&("DELETE".to_owned(), 200)),
        "the player's DELETE was not taken: {requests:?}"
    );
    assert!(
        wait_for(Duration::from_secs(5), || device.viewers() == 0).await,
        "the DELETE did not end the session"
    );
    device.shutdown().await;
}
