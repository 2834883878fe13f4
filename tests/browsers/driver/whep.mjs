// Plays a campeer camera in Debian's headless Chromium with a WHEP player library from npm,
// Eyevinn's @eyevinn/webrtc-player, as a third-party page would: the page is served from an
// origin of its own (another loopback port, so every WHEP request is cross-origin and needs
// campeer's CORS answers), the library is bundled for the browser with esbuild, and it is
// given campeer's WHEP URL and bearer token and no ICE servers (it would otherwise ask a
// public STUN server). One JSON line every 500 ms with what the video element shows; at the
// end a screenshot, then the player is unloaded (its DELETE) and {"done":true}. Bounded: it
// exits after --seconds, or as soon as the page has played --frames frames.
//
//   node tests/browsers/driver/whep.mjs --whep-url URL [--token T] [--seconds S] [--frames N]
//                               [--screenshot PATH]
import * as esbuild from "esbuild";
import { createServer } from "node:http";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { emit, launchChromium, parseArgs } from "./launch.mjs";

const args = parseArgs();
const seconds = Number(args.seconds ?? 20);
const wantedFrames = Number(args.frames ?? 0);

// The library as a page would ship it: one script that puts WebRTCPlayer on window.
const bundle = await esbuild.build({
  stdin: {
    contents:
      'import { WebRTCPlayer } from "@eyevinn/webrtc-player"; window.WebRTCPlayer = WebRTCPlayer;',
    resolveDir: dirname(fileURLToPath(import.meta.url)),
  },
  bundle: true,
  write: false,
  format: "iife",
  platform: "browser",
  logLevel: "warning",
});
const player = bundle.outputFiles[0].text;

const page = `<!doctype html>
<html><head><meta charset="utf-8"><title>WHEP player</title>
<style>body{margin:0;background:#222}video{width:960px;height:720px;background:#000}</style>
</head><body><video id="video" autoplay muted playsinline></video>
<script src="/player.js"></script>
<script>
  const video = document.getElementById("video");
  window.whepPlayer = new WebRTCPlayer({ video, type: "whep", iceServers: [] });
  window.whepStartedAt = performance.now();
  video.addEventListener("loadeddata", () => { window.firstPictureMs = performance.now() - window.whepStartedAt; }, { once: true });
  window.whepPlayer.load(new URL(${JSON.stringify(args["whep-url"])}), ${JSON.stringify(
    args.token ? `Bearer ${args.token}` : undefined,
  ) ?? "undefined"});
</script></body></html>`;

// The third-party page's own origin, on loopback.
const server = createServer((request, response) => {
  if (request.url === "/player.js") {
    response.writeHead(200, { "content-type": "text/javascript" });
    response.end(player);
  } else {
    response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    response.end(page);
  }
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const origin = `http://127.0.0.1:${server.address().port}`;
emit({ origin });

// Host candidates as plain addresses: no mDNS announcements to 224.0.0.251 (campeer,
// loopback-only here, ignores them either way and is reached as peer-reflexive).
const browser = await launchChromium(["--disable-features=WebRtcHideLocalIpsWithMdns"]);
const deadline = Date.now() + seconds * 1000;
try {
  const context = await browser.newContext({ viewport: { width: 960, height: 720 } });
  const tab = await context.newPage();
  tab.on("console", (m) => m.type() === "error" && emit({ console: m.text() }));
  tab.on("pageerror", (e) => emit({ pageerror: String(e) }));
  // What the library asks of campeer, as the browser sent it.
  tab.on("response", (r) => {
    if (r.url().includes("/whep/")) emit({ request: r.request().method(), status: r.status() });
  });
  tab.on("requestfailed", (r) => emit({ requestfailed: r.url(), error: r.failure()?.errorText }));
  await tab.goto(origin);
  while (Date.now() < deadline) {
    const seen = await tab.evaluate(() => {
      const video = document.getElementById("video");
      return {
        videoWidth: video.videoWidth,
        videoHeight: video.videoHeight,
        currentTime: video.currentTime,
        framesDecoded: video.getVideoPlaybackQuality().totalVideoFrames,
        firstPictureMs: window.firstPictureMs ?? null,
      };
    }).catch((e) => ({ error: String(e) }));
    emit(seen);
    if (wantedFrames && seen.framesDecoded >= wantedFrames) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  if (args.screenshot) await tab.screenshot({ path: args.screenshot });
  // The player's unload sends the DELETE that ends the session.
  await tab.evaluate(() => window.whepPlayer.unload()).catch((e) => emit({ unloadError: String(e) }));
  await new Promise((r) => setTimeout(r, 500));
} finally {
  await browser.close();
  server.close();
  emit({ done: true });
}
