//! `cargo bench --bench network`: the link matrix for campeer (the release daemon) in the
//! network-namespace lab, with the test viewer and with headless Chromium: per link, the
//! frames shown per second, the longest freeze, glass-to-glass latency p50/p90, what campeer
//! offered to the link and what the link delivered, and the share of retransmissions.
//! Reports figures; asserts nothing. Needs root, iproute2, iptables, Chromium and
//! tests/browsers/driver's playwright-core (tests/run installs them); without root it says so and
//! stops. Every address is inside namespaces it creates and deletes.

use common::network::{
    LINK_MEASURE, LINK_RAMP, LabCampeer, LinkReport, lab_available, selected_link_cases,
    watch_over_lab, watch_page_over_lab,
};

fn row(viewer: &str, link: &str, report: &LinkReport) {
    let p = &report.playback;
    println!(
        "| {viewer:<8} | {link:<9} | {:>5.1} | {:>9} | {:>7} | {:>7} | {:>11.0} | {:>16.0} | {:>5.1} |",
        p.fps,
        p.longest_freeze.as_millis(),
        p.latency_p50_ms,
        p.latency_p90_ms,
        report.offered_kbps,
        report.delivered_kbps,
        100.0 * report.retransmitted_share
    );
}

fn main() {
    if let Err(reason) = lab_available() {
        println!("network bench skipped: {reason}");
        return;
    }
    println!(
        "link matrix: tbf with a 200 ms queue, loss from the first picture, {} s ramp, {} s measured",
        LINK_RAMP.as_secs(),
        LINK_MEASURE.as_secs()
    );
    println!(
        "| viewer   | link      |   fps | freeze ms | p50 ms | p90 ms | sent kbit/s | delivered kbit/s | rtx % |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for case in selected_link_cases() {
        let lab = case.lab();
        let campeer = LabCampeer::start(&lab, case.name, &[]);
        let report = watch_over_lab(
            &lab,
            &campeer,
            &format!("v-{}", case.name),
            case.loss,
            LINK_RAMP,
            LINK_MEASURE,
        );
        row("test", case.name, &report);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    for case in selected_link_cases() {
        let lab = case.lab();
        let device = format!("page-{}", case.name);
        let report = runtime.block_on(watch_page_over_lab(
            &lab,
            &device,
            case.loss,
            LINK_RAMP,
            LINK_MEASURE,
        ));
        row("chromium", case.name, &report);
    }
}
