// Opens campeer's page in Debian's headless Chromium and uses its camera panel as a person
// would: waits for the live picture, takes a snapshot, opens the recordings, plays the newest
// finished one in the video element, then goes back to live. Prints one JSON line per step
// with what the page shows, takes a screenshot after each, then {"done":true}. Bounded by
// --seconds.
//
//   node tests/browsers/driver/recordings.mjs --url URL --screenshot PREFIX [--seconds S]
import { emit, launchChromium, parseArgs } from "./launch.mjs";

const args = parseArgs();
const deadline = Date.now() + Number(args.seconds ?? 60) * 1000;
const browser = await launchChromium();
const page = await (await browser.newContext({ viewport: { width: 1100, height: 900 } })).newPage();
page.on("pageerror", (e) => emit({ pageerror: String(e) }));
page.on("console", (m) => m.type() === "error" && emit({ console: m.text() }));

// Waits until `condition` (run in the page) holds, at most until the deadline.
async function until(step, condition) {
  while (Date.now() < deadline) {
    if (await page.evaluate(condition).catch(() => false)) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  emit({ step, timedOut: true });
  return false;
}

const seen = () => page.evaluate(() => ({
  camera: { ...window.campeerCamera },
  live: window.campeerStats?.state,
  cameraState: document.getElementById("camera-state")?.textContent ?? "",
  message: document.getElementById("camera-message")?.textContent ?? "",
  recordings: [...document.querySelectorAll("#recordings li")].map((li) => li.innerText),
  thumbnails: [...document.querySelectorAll("#recordings img")].filter((i) => i.naturalWidth > 0).length,
  motionBadges: document.querySelectorAll("#recordings .motion").length,
  video: {
    src: document.getElementById("video").currentSrc,
    time: document.getElementById("video").currentTime,
    width: document.getElementById("video").videoWidth,
    controls: document.getElementById("video").controls,
  },
}));

try {
  await page.goto(args.url);
  if (await until("live", () => window.campeerStats?.state === "playing" &&
      !document.getElementById("camera").hidden)) {
    emit({ step: "live", ...(await seen()) });
  }
  await page.click("#snapshot");
  if (await until("snapshot", () => window.campeerCamera.snapshotWidth > 0)) {
    emit({ step: "snapshot", ...(await seen()) });
    await page.screenshot({ path: `${args.screenshot}-snapshot.png` });
  }
  await page.click("#show-recordings");
  if (await until("list", () => document.querySelectorAll("#recordings li").length > 0 &&
      [...document.querySelectorAll("#recordings img")].some((i) => i.naturalWidth > 0))) {
    emit({ step: "list", ...(await seen()) });
    await page.screenshot({ path: `${args.screenshot}-list.png` });
  }
  // The newest finished recording: the second in the list (the first is being written).
  const buttons = await page.$$("#recordings button");
  await (buttons[1] ?? buttons[0])?.click();
  if (await until("playing", () => {
    const v = document.getElementById("video");
    return v.currentTime > 1.5 && v.videoWidth > 0 && window.campeerCamera.playing;
  })) {
    emit({ step: "playing", ...(await seen()) });
    await page.screenshot({ path: `${args.screenshot}-playing.png` });
  }
  await page.click("#live");
  if (await until("back", () => window.campeerStats?.state === "playing" &&
      document.getElementById("video").srcObject)) {
    emit({ step: "back", ...(await seen()) });
  }
} catch (err) {
  emit({ error: String(err) });
} finally {
  await browser.close();
  emit({ done: true });
}
