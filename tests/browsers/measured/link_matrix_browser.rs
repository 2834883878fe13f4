//! The link matrix with headless Chromium as the viewer: Chromium runs inside the viewer's
//! network namespace (`ip netns exec`) and opens campeer's page over the lab link; the page
//! logs every picture it shows with the latency read from the timestamp squares. The same bar
//! as with the test viewer. The links run one after another (two cores: Chromiums side by side
//! would measure each other), and every shortfall is reported before the test fails.

use common::network::{
    LINK_MEASURE, LINK_RAMP, require_lab, selected_link_cases, watch_page_over_lab,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_over_every_link() {
    let _load = common::load::whole_machine();
    if !require_lab() {
        return;
    }
    let mut failures = Vec::new();
    for case in selected_link_cases() {
        let lab = case.lab();
        let device = format!("page-{}", case.name);
        let report = watch_page_over_lab(&lab, &device, case.loss, LINK_RAMP, LINK_MEASURE).await;
        eprintln!("page over {}: {report}", case.name);
        let wrong = case.shortfalls(&report);
        if !wrong.is_empty() {
            failures.push(format!("{}: {report}: {wrong:?}", case.name));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
