// The camera panel under the video: what the camera is doing (motion, recording, disk), a
// snapshot, and its recordings, played in the same video element as the live picture. It
// talks to the campeer that serves this page (/snapshot/<device>.jpg, /recordings/<device>):
// for a camera another campeer serves, it says so.

const $ = (id) => document.getElementById(id);
const video = $("video");
// What the panel shows, also read by the browser tests.
const panel = (window.campeerCamera = {
  device: null, snapshotWidth: 0, recordings: 0, playing: null, message: "",
});
let hooks = null;
let listedFor = null;

// The token this server's recordings and snapshots want, when the page was given one.
function authorization() {
  const token = sessionStorage.getItem("campeer-token");
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function tell(text) {
  panel.message = text;
  $("camera-message").textContent = text;
}

// Fetches from this server; a 401 asks for the token, a 404 says this server does not serve
// the camera's recordings.
async function get(url) {
  const response = await fetch(url, { headers: authorization(), cache: "no-store" });
  if (response.status === 401) {
    $("token-form").hidden = false;
    throw new Error("this server wants its token for that");
  }
  if (response.status === 404) throw new Error("this server does not keep that for this camera");
  if (response.status === 503) throw new Error("the camera is not live right now; try again shortly");
  if (!response.ok) throw new Error(`the server answered ${response.status}`);
  return response;
}

function clock(iso) {
  const at = new Date(iso);
  return Number.isNaN(at.getTime()) ? "" : at.toLocaleString();
}

// One line on motion, recording and disk, from the device's status.
function describe(status) {
  const parts = [];
  const motion = status?.motion;
  if (motion) {
    parts.push(motion.state === "on"
      ? `Motion now, since ${clock(motion.at)}`
      : motion.events > 0 ? `Last motion ${clock(motion.at)}` : "No motion seen yet");
  } else {
    parts.push("Motion detection off");
  }
  const record = status?.record;
  if (record) {
    const what = record.state === "recording" ? `recording (${record.mode})`
      : record.state === "failed" ? `recording failed: ${record.error ?? "unknown"}`
      : record.mode === "motion" ? "waiting for motion to record" : "waiting for the camera";
    parts.push(`Recording: ${what}`);
    if (Number.isFinite(record.free_mb)) parts.push(`${record.free_mb} MB free`);
  } else {
    parts.push("Not recording");
  }
  return parts.join(" · ");
}

// Shows the panel for `device` as its latest `status` says.
export function showCamera(device, status) {
  if (!device) {
    $("camera").hidden = true;
    return;
  }
  $("camera").hidden = false;
  if (panel.device !== device) {
    panel.device = device;
    panel.recordings = 0;
    listedFor = null;
    $("recordings").hidden = true;
    $("show-recordings").setAttribute("aria-expanded", "false");
    $("snapshot-view").hidden = true;
    tell("");
  }
  $("camera-name").textContent = device;
  $("camera-state").textContent = describe(status);
}

async function takeSnapshot() {
  const device = panel.device;
  if (!device) return;
  tell("Taking a snapshot…");
  try {
    const blob = await (await get(`/snapshot/${encodeURIComponent(device)}.jpg`)).blob();
    const url = URL.createObjectURL(blob);
    const image = $("snapshot-image");
    const old = image.src;
    image.onload = () => {
      panel.snapshotWidth = image.naturalWidth;
      if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    };
    image.src = url;
    $("snapshot-save").href = url;
    $("snapshot-save").download = `${device}-${new Date().toISOString().replaceAll(":", "-")}.jpg`;
    $("snapshot-view").hidden = false;
    tell("");
  } catch (err) {
    tell(`No snapshot: ${err.message}.`);
  }
}

// An image source for `url` that carries the token when there is one.
async function imageSource(url) {
  if (!sessionStorage.getItem("campeer-token")) return url;
  return URL.createObjectURL(await (await get(url)).blob());
}

async function listRecordings() {
  const device = panel.device;
  const list = $("recordings");
  tell("Looking for recordings…");
  let recordings;
  try {
    recordings = await (await get(`/recordings/${encodeURIComponent(device)}`)).json();
  } catch (err) {
    list.hidden = true;
    tell(`No recordings: ${err.message}.`);
    return;
  }
  if (!Array.isArray(recordings)) recordings = [];
  listedFor = device;
  panel.recordings = recordings.length;
  list.replaceChildren();
  // The newest hundred: a day of motion clips, or eight hours of continuous segments.
  for (const recording of recordings.slice(0, 100)) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    const picture = document.createElement("img");
    picture.alt = "";
    picture.loading = "lazy";
    if (typeof recording.thumbnail === "string") {
      imageSource(recording.thumbnail).then((src) => { picture.src = src; }, () => {});
    }
    const minutes = Math.floor((recording.duration_secs ?? 0) / 60);
    const seconds = String(Math.round((recording.duration_secs ?? 0) % 60)).padStart(2, "0");
    const size = ((recording.bytes ?? 0) / 1e6).toFixed(1);
    const text = document.createElement("small");
    text.textContent = `${clock(recording.start)} · ${minutes}:${seconds} · ${size} MB`;
    button.append(picture, text);
    if (recording.trigger === "motion") {
      const badge = document.createElement("span");
      badge.className = "badge motion";
      badge.textContent = "motion";
      button.prepend(badge);
    }
    button.addEventListener("click", () => play(recording.url, button));
    item.append(button);
    list.append(item);
  }
  list.hidden = false;
  tell(recordings.length ? "" : "Nothing recorded yet.");
}

// Plays a recording in the video element; the live session ends meanwhile.
async function play(url, button) {
  hooks.leaveLive();
  for (const other of document.querySelectorAll("#recordings button")) {
    other.setAttribute("aria-current", String(other === button));
  }
  video.srcObject = null;
  video.controls = true;
  video.muted = false;
  try {
    video.src = await imageSource(url);
    await video.play().catch(() => {});
    panel.playing = url;
    $("live").hidden = false;
    tell("");
  } catch (err) {
    tell(`Cannot play that recording: ${err.message}.`);
  }
}

function backToLive() {
  const source = video.src;
  video.pause();
  video.removeAttribute("src");
  video.load();
  if (source.startsWith("blob:")) URL.revokeObjectURL(source);
  video.controls = false;
  video.muted = true;
  panel.playing = null;
  $("live").hidden = true;
  for (const button of document.querySelectorAll("#recordings button")) {
    button.setAttribute("aria-current", "false");
  }
  hooks.backToLive(panel.device);
}

// `leaveLive()` ends the live session for a recording; `backToLive(device)` starts it again.
export function initCameraPanel(given) {
  hooks = given;
  $("snapshot").addEventListener("click", takeSnapshot);
  $("show-recordings").addEventListener("click", () => {
    const open = $("recordings").hidden || listedFor !== panel.device;
    $("show-recordings").setAttribute("aria-expanded", String(open));
    if (open) listRecordings();
    else $("recordings").hidden = true;
  });
  $("live").addEventListener("click", backToLive);
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("campeer-token", $("token").value);
    $("token-form").hidden = true;
    tell("Token saved for this tab; try again.");
  });
}
