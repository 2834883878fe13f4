// Opens campeer's viewer page in Debian's headless Chromium (playwright-core) or Firefox ESR
// (puppeteer-core, which talks WebDriver BiDi to it directly) and reports what a person would
// see, for the Rust browser tests: one JSON line per page every 500 ms with the page's
// window.campeerStats, the message shown, the broker state and the device list; screenshots,
// latency samples and the frame log at the end; then {"done":true}. Bounded: it exits after --seconds.
//
// It also ends early once the file given as --stop-file exists.
//
//   node tests/browsers/driver/watch.mjs --url URL [--pages N] [--seconds S] [--screenshot PREFIX]
//                                [--stop-file PATH] [--page-urls URL1,URL2,...]
//                                [--browser chromium|firefox] [--firefox-h264 1] [--ice-warmup 1]
//                                [--pagehide-frozen-ms N]
//
// --ice-warmup 1 (Chromium) first waits until a probe page gathers an ICE candidate: in a
// network namespace made moments before, Chromium's first pages at times see no network.
// --page-urls gives each page a URL of its own (page i opens the i-th); --url is the rest's.
// --firefox-h264 1 turns on Firefox's H.264 through the system's FFmpeg (libavcodec), as a
// user can in about:config; without it Firefox is as Debian ships it: no H.264.
// --pagehide-frozen-ms N: before closing the pages, fire pagehide in each and keep its thread
// busy for N ms, as a tab being torn down runs no more timers: what the page sends as it goes
// must leave at once. Prints {"pagehideFrozen":true} as it fires the event.
import puppeteer from "puppeteer-core";
import { existsSync } from "node:fs";
import { emit, launchChromium, parseArgs, waitForIceNetwork } from "./launch.mjs";

const args = parseArgs();
const url = args.url;
const pages = Number(args.pages ?? 1);
const seconds = Number(args.seconds ?? 20);

const firefox = args.browser === "firefox";
const viewport = { width: 1100, height: 720 };
// What headless Firefox's window frame takes of its height (its inner height is 86 px less).
const firefoxFrame = 86;

async function openChromium() {
  const browser = await launchChromium();
  const context = await browser.newContext({ viewport });
  if (args["ice-warmup"] === "1") {
    const probes = await waitForIceNetwork(context);
    emit({ iceWarmup: probes ?? "no network seen; opening the page anyway" });
  }
  return { browser, newPage: () => context.newPage() };
}

async function openFirefox() {
  const prefs = {
    // Play without a click, as launchChromium's autoplay flag does.
    "media.autoplay.default": 0,
    "media.autoplay.blocking_policy": 0,
    // Nothing from the internet: no updates, telemetry or plugin downloads.
    "app.update.enabled": false,
    "datareporting.policy.dataSubmissionEnabled": false,
    "toolkit.telemetry.enabled": false,
    "media.gmp-manager.updateEnabled": false,
    "network.captive-portal-service.enabled": false,
    "network.connectivity-service.enabled": false,
  };
  if (args["firefox-h264"] === "1") {
    prefs["media.webrtc.hw.h264.enabled"] = true;
    prefs["gfx.blacklist.webrtc.hw.acceleration.h264"] = 1;
  }
  const browser = await puppeteer.launch({
    browser: "firefox",
    executablePath: process.env.FIREFOX ?? "/usr/bin/firefox-esr",
    headless: true,
    extraPrefsFirefox: prefs,
    // The window's size, not puppeteer's viewport emulation: its setViewport also sends
    // emulation.setScreenOrientationOverride, which Debian 12's firefox-esr 140 does not
    // know (an error that ends the script). The window's frame takes some of its height.
    defaultViewport: null,
    args: ["-width", String(viewport.width), "-height", String(viewport.height + firefoxFrame)],
  });
  return { browser, newPage: () => browser.newPage() };
}

const { browser, newPage } = firefox ? await openFirefox() : await openChromium();
const deadline = Date.now() + seconds * 1000;
try {
  const opened = [];
  for (let i = 0; i < pages; i++) {
    const page = await newPage();
    page.on("console", (m) => m.type() === "error" && emit({ page: i, console: m.text() }));
    if (i === 0) emit({ page: i, userAgent: await page.evaluate(() => navigator.userAgent) });
    page.on("pageerror", (e) => emit({ page: i, pageerror: String(e) }));
    const loadedAt = Date.now();
    await page.goto(args["page-urls"]?.split(",")[i] ?? url);
    opened.push({ page, loadedAt });
  }
  while (Date.now() < deadline && !(args["stop-file"] && existsSync(args["stop-file"]))) {
    for (const [i, { page, loadedAt }] of opened.entries()) {
      const seen = await page.evaluate(() => ({
        stats: { ...window.campeerStats, latencySamples: undefined, frameLog: undefined },
        latencySamples: window.campeerStats?.latencySamples?.length ?? 0,
        message: document.getElementById("message")?.textContent ?? "",
        broker: document.getElementById("broker-state")?.textContent ?? "",
        devices: [...document.querySelectorAll("#devices button")].map((b) => b.innerText),
        overlay: document.getElementById("overlay")?.textContent ?? "",
        videoWidth: document.getElementById("video")?.videoWidth ?? 0,
        videoHeight: document.getElementById("video")?.videoHeight ?? 0,
      })).catch((e) => ({ error: String(e) }));
      emit({ page: i, sinceLoadMs: Date.now() - loadedAt, ...seen });
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  for (const [i, { page }] of opened.entries()) {
    if (args.screenshot) await page.screenshot({ path: `${args.screenshot}-${i}.png` });
    const samples = await page.evaluate(() => window.campeerStats?.latencySamples ?? []);
    const frameLog = await page.evaluate(() => window.campeerStats?.frameLog ?? []);
    emit({ page: i, latencySamples: samples, frameLog });
  }
  const frozenMs = Number(args["pagehide-frozen-ms"] ?? 0);
  if (frozenMs > 0) {
    for (const [i, { page }] of opened.entries()) {
      emit({ page: i, pagehideFrozen: true });
      await page.evaluate((ms) => {
        dispatchEvent(new PageTransitionEvent("pagehide", { persisted: false }));
        const end = Date.now() + ms;
        while (Date.now() < end) { /* no timer runs meanwhile */ }
      }, frozenMs);
    }
  }
  // Close the pages the way a person closes a tab (pagehide fires).
  for (const { page } of opened) await page.close({ runBeforeUnload: true });
  await new Promise((r) => setTimeout(r, 500));
} finally {
  await browser.close();
  emit({ done: true });
}
