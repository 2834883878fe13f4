//! Scenarios in real browsers: Debian's Chromium (playwright-core) and firefox-esr
//! (puppeteer-core) on campeer's page or a WHEP player page, decoding what they receive.

mod browser_answer_timeout;
mod browser_audio;
mod browser_busy_offline;
mod browser_embedded_broker;
mod browser_junk_status;
mod browser_microphone_failed;
mod browser_mosquitto;
mod browser_recovery;
mod firefox_h264;
mod firefox_vp8;
mod recordings_page;
mod two_cameras_crash;
mod whep_chromium;

/// Scenarios that measure time or memory (frame rates, freezes, latency, how fast the rate
/// follows a link, the process's growth): each has the machine to itself
/// (`common::load::whole_machine`), and they sit together so that the others make way once,
/// not before each of them.
mod measured {
    mod browser_two_pages;
    mod chromium_and_firefox;
    mod link_matrix_browser;
    mod two_cameras;
}
