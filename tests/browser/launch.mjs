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
