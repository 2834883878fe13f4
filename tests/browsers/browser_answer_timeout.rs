//! The page offers to a device whose (stale or spoofed) status says online but which never
//! answers. It gives up on the offer after its answer timeout, hangs up, and tries again under
//! a fresh session id, so nothing meant for the old call can reach the new one; once a real
//! device answers under that name, the page plays.

use campeer::config::Overrides;
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unanswered_offer_is_retried_under_a_fresh_session() {
    let _load = common::load::shared();
    let host = start_device(zero_config_overrides("host")).await;
    let broker_port = host
        .embedded_broker()
        .expect("embedded broker")
        .listen
        .port();
    let inbound = TopicWatcher::start_on(broker_port, None, "campeer/cam9/in/+").await;
    inbound
        .publish_retained(
            "campeer/cam9/status",
            r#"{"state":"online","video":{"codec":"H264","width":640,"height":480,"fps":30},"audio":null,"viewers":0}"#,
        )
        .await;
    let url = format!("http://{}/?device=cam9", host.http_addr());
    let browser = BrowserRun::start(&url, 1, 60, &screenshot_prefix("answer-timeout"));

    // (session, type) of each message the page sent to cam9.
    let sent = || -> Vec<(String, String)> {
        let topics = inbound.topics.lock().unwrap().clone();
        let messages = inbound.messages.lock().unwrap().clone();
        topics
            .iter()
            .zip(&messages)
            .map(|(topic, m)| {
                let session = topic.rsplit('/').next().unwrap_or("").to_owned();
                (session, m["type"].as_str().unwrap_or("").to_owned())
            })
            .collect()
    };
    let offers = |sent: &[(String, String)]| -> Vec<String> {
        sent.iter()
            .filter(|(_, kind)| kind == "offer")
            .map(|(session, _)| session.clone())
            .collect()
    };
    assert!(
        wait_for(Duration::from_secs(30), || offers(&sent()).len() >= 2).await,
        "the page did not offer again: {:?}",
        sent()
    );
    let all = sent();
    let offered = offers(&all);
    assert_ne!(
        offered[0], offered[1],
        "the second call reused the session id"
    );
    assert!(
        all.contains(&(offered[0].clone(), "hangup".to_owned())),
        "the unanswered call was not hung up: {all:?}"
    );

    // A real cam9 comes up on the same broker: the page's next try plays.
    let cam9 = start_device(Overrides {
        broker: vec![format!("mqtt://127.0.0.1:{broker_port}")],
        ..zero_config_overrides("cam9")
    })
    .await;
    assert_page_plays(&browser, 0, 30).await;
    browser.close(Duration::from_secs(60)).await;
    cam9.shutdown().await;
    host.shutdown().await;
}
