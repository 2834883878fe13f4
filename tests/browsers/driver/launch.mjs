// What the browser scripts share: their command line, their one-JSON-line-per-event output and
// how Debian's headless Chromium is started for a test (no sandbox as root, nothing fetched
// from the internet: without the background-networking flags Chromium keeps dialling hosts
// this machine cannot reach; autoplay without a click, as a person's click would allow).
import { chromium } from "playwright-core";

/** `--name value` pairs from the command line, as an object. */
export function parseArgs(argv = process.argv.slice(2)) {
  return Object.fromEntries(
    argv.reduce((pairs, arg, i, all) => {
      if (arg.startsWith("--")) pairs.push([arg.slice(2), all[i + 1]]);
      return pairs;
    }, []),
  );
}

/** One JSON line on stdout, which the Rust side reads as it comes. */
export const emit = (value) => process.stdout.write(JSON.stringify(value) + "\n");

/** Debian's Chromium, headless, with `extraArgs` after the test flags. */
export function launchChromium(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--autoplay-policy=no-user-gesture-required",
      ...extraArgs,
    ],
  });
}

/**
 * Waits (at most `limitMs`) until Chromium's WebRTC sees a network: a page that gathers ICE
 * candidates gets at least one. Chromium started in a network namespace made moments before
 * at times hands a page's first peer connections an empty network list, and that page then
 * never gathers a candidate or sends a packet, however often it tries again: it stays
 * "connecting". A fresh page, once the browser has settled, gathers normally. Returns how many
 * probe pages it took, or null when none gathered a candidate in time.
 */
export async function waitForIceNetwork(context, limitMs = 15_000) {
  const deadline = Date.now() + limitMs;
  for (let probe = 1; Date.now() < deadline; probe++) {
    const page = await context.newPage();
    const gathered = await page.evaluate(async () => {
      const pc = new RTCPeerConnection();
      pc.createDataChannel("probe");
      let count = 0;
      const complete = new Promise((resolve) => {
        pc.onicecandidate = ({ candidate }) => (candidate ? count++ : resolve());
        setTimeout(resolve, 2000);
      });
      await pc.setLocalDescription(await pc.createOffer());
      await complete;
      pc.close();
      return count;
    });
    await page.close();
    if (gathered > 0) return probe;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  return null;
}
