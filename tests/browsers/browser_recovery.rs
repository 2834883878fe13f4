//! The page recovers after campeer restarts: the zero-config binary (embedded broker and all)
//! is stopped and started again on the same ports, and the page plays again by itself.

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn page_recovers_after_a_restart() {
    let _load = common::load::shared();
    let (args, http) = zero_config_args("cam4");
    let mut daemon = DaemonProcess::spawn(&args);
    let url = format!("http://127.0.0.1:{http}/");
    assert!(wait_for_listener(http).await);
    let browser = BrowserRun::start(&url, 1, UNTIL_CLOSED_SECS, &screenshot_prefix("recovery"));
    assert_page_plays(&browser, 0, 30).await;

    daemon.signal("TERM");
    assert!(
        daemon
            .wait(Duration::from_secs(15))
            .is_some_and(|s| s.success())
    );
    assert!(
        browser
            .wait_for(Duration::from_secs(10), 0, |v| v["stats"]["state"]
                != "playing")
            .await,
        "the page still claims to play after campeer stopped"
    );
    // Down long enough that the page's first reconnection attempts fail.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _daemon = DaemonProcess::spawn(&args);
    assert!(
        browser
            .wait_for(Duration::from_secs(25), 0, |v| is_playing(v, 30))
            .await,
        "the page did not recover: {:?}",
        browser.latest(0)
    );
    browser.close(Duration::from_secs(40)).await;
}
