// campeer viewer: lists the devices announced on MQTT and plays the one you pick over WebRTC,
// speaking exactly the signaling protocol in the README. Standards only, no build step.
import mqtt from "./vendor/mqtt.esm.js";
import { initCameraPanel, showCamera } from "./camera.js";

const $ = (id) => document.getElementById(id);
const video = $("video");

// Everything the overlay shows, also read by the browser tests.
const stats = (window.campeerStats = {
  state: "idle", device: null, message: "", codec: "", width: 0, height: 0, fps: 0,
  framesDecoded: 0, bitrateKbps: 0, packetLossPercent: 0, rttMs: null, latencyMs: null,
  latencySamples: [], brokerConnected: false, firstFrameMs: null, offerToFirstFrameMs: null,
  // Each picture shown, as [Date.now(), latency in ms or null], the last 4000: frame rate,
  // freezes and latency over any stretch of time, for measurements.
  frameLog: [],
  audioCodec: "", audioPackets: 0, audioSamples: 0, audioLevel: null, audioPeakHz: null,
  audioNote: "",
  // What campeer says about this page's link (its stats topic): its estimate of what the
  // link carries and what it sent over it.
  estimateKbps: null, sentKbps: null,
});

// The sound's level (RMS, 0 to 1) and strongest frequency, measured with Web Audio from the
// received track itself, so it works while the video element is muted.
let meter = null;
function meterTrack(track) {
  try {
    const ctx = new AudioContext();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 8192;
    ctx.createMediaStreamSource(new MediaStream([track])).connect(analyser);
    meter = { ctx, analyser };
  } catch {
    meter = null; // no Web Audio here: the overlay simply shows no level
  }
}
function readMeter() {
  if (!meter || meter.ctx.state !== "running") return;
  const { analyser, ctx } = meter;
  const wave = new Float32Array(analyser.fftSize);
  analyser.getFloatTimeDomainData(wave);
  stats.audioLevel = Math.sqrt(wave.reduce((sum, x) => sum + x * x, 0) / wave.length);
  const bins = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(bins);
  let peak = 1;
  for (let i = 2; i < bins.length; i++) if (bins[i] > bins[peak]) peak = i;
  stats.audioPeakHz = stats.audioLevel > 0.001 ? Math.round((peak * ctx.sampleRate) / analyser.fftSize) : null;
}

let config = null;
let client = null;
let brokerAttempt = 0;
let reconnectTimer = null;
const devices = new Map(); // device id -> last status
let wanted = null; // the device the viewer wants to watch
let watching = null; // the live session, if any
let shownCamera = null; // the device the camera panel shows
// The session id is this page's MQTT client id, so a broker ACL on the client id fences it.
// Each call gets a fresh one (the page reconnects to the broker under it before calling
// again): nothing meant for an earlier call, a late answer say, can reach the new one.
const newSessionId = () => "web-" + Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) =>
  (b % 36).toString(36)).join("");
let sessionId = newSessionId();
// Whether the current session id has been used for a call.
let sessionUsed = false;
// After a refusal or a call that never got an answer, the next try waits (backoff, so a
// busy device is not hammered); a status update alone does not retry before then.
let retryAt = 0;
let retryDelay = 1;
// How long an offer may wait for its answer before the page hangs up and tries again.
const ANSWER_TIMEOUT_MS = 10000;

function say(text) {
  stats.message = text;
  $("message").textContent = text;
}

function brokerUrl() {
  if (config.brokerUrl) return config.brokerUrl;
  if (!config.brokerWsPath) return null;
  // The embedded broker, on this page's own origin.
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}${config.brokerWsPath}`;
}

function credentials() {
  const user = sessionStorage.getItem("campeer-user");
  return user ? { username: user, password: sessionStorage.getItem("campeer-password") ?? "" } : {};
}

// `graceful`: let the old connection flush what it queued (a hangup) before it closes.
function connectBroker(graceful = false) {
  const url = brokerUrl();
  if (!url) {
    $("broker-state").textContent = "No broker address is configured (set web.broker_ws_url).";
    return;
  }
  clearTimeout(reconnectTimer);
  if (client) {
    const old = client;
    client = null; // its "close" must not trigger a retry
    old.end(!graceful);
  }
  $("broker-state").textContent = `connecting to ${url}…`;
  // Reconnection is ours, with backoff; mqtt.js would retry at a fixed pace.
  const c = mqtt.connect(url, {
    clientId: sessionId, clean: true, reconnectPeriod: 0, connectTimeout: 5000,
    protocolVersion: 4, ...credentials(),
  });
  client = c;
  let failure = "";
  let retrying = false;
  // One retry per client, whichever reports the failure first: "close", an error, or no
  // connection by the time the connect timeout has passed (a refused WebSocket does not
  // always end in "close").
  const retry = () => {
    if (client !== c || retrying) return;
    retrying = true;
    stats.brokerConnected = false;
    const delay = Math.min(30, 0.5 * 2 ** brokerAttempt++);
    $("broker-state").textContent =
      `Cannot reach the MQTT broker at ${url}${failure ? ` (${failure})` : ""}. ` +
      `Retrying in ${delay < 1 ? delay.toFixed(1) : Math.round(delay)} s.`;
    if (!watching) say("The broker is unreachable, so no device can be reached right now.");
    c.end(true);
    reconnectTimer = setTimeout(connectBroker, delay * 1000);
  };
  const watchdog = setTimeout(() => { if (!c.connected) retry(); }, 6000);
  c.on("connect", () => {
    clearTimeout(watchdog);
    brokerAttempt = 0;
    stats.brokerConnected = true;
    $("broker-state").textContent = `connected to ${url}`;
    $("login").hidden = true;
    c.subscribe([`${config.prefix}/+/status`, `${config.prefix}/+/out/${sessionId}`], { qos: 1 });
    c.subscribe(`${config.prefix}/+/stats`, { qos: 0 });
  });
  c.on("message", onMessage);
  c.on("error", (err) => {
    failure = err.message;
    if (err.code === 4 || err.code === 5) $("login").hidden = false;
    if (!c.connected) retry();
  });
  c.on("close", retry);
}

function publish(device, message, qos = 1) {
  if (!client?.connected) return;
  client.publish(`${config.prefix}/${device}/in/${sessionId}`, JSON.stringify(message), { qos });
}

function onMessage(topic, payload) {
  const parts = topic.split("/");
  let message;
  try { message = JSON.parse(new TextDecoder().decode(payload)); } catch { return; }
  if (parts.at(-1) === "status") {
    onStatus(parts.at(-2), message);
  } else if (parts.at(-1) === "stats") {
    onLinkStats(parts.at(-2), message);
  } else if (parts.at(-2) === "out" && parts.at(-1) === sessionId) {
    const device = parts.at(-3);
    if (watching?.device === device) onDeviceMessage(watching, message);
  }
}

// The device's figures for this page's own session, if it is watching that device.
function onLinkStats(device, message) {
  if (watching?.device !== device || !Array.isArray(message?.viewers)) return;
  const mine = message.viewers.find((v) => v?.session === sessionId);
  if (!mine) return;
  stats.estimateKbps = Number.isFinite(mine.estimate_kbps) ? mine.estimate_kbps : null;
  stats.sentKbps = Number.isFinite(mine.sent_kbps) ? mine.sent_kbps : null;
}

// Devices whose video this browser cannot play: not offered again automatically.
const unplayable = new Set();

// A status worth reading: an object with a known state. Anything else (a retained null, junk
// from another client) is ignored rather than trusted or allowed to throw.
function validStatus(status) {
  return status !== null && typeof status === "object" && !Array.isArray(status) &&
    (status.state === "online" || status.state === "offline");
}

function onStatus(device, status) {
  if (!validStatus(status)) return;
  devices.set(device, status);
  renderDevices();
  if (device === shownCamera) showCamera(device, status);
  applyStatus(device);
  // Cameras served over this device's broker connection go offline and online with it.
  for (const [id, other] of devices) {
    if (other.via === device) applyStatus(id);
  }
}

// Whether a device is online: its own status says so and, for a camera served over another
// device's broker connection (`via`), that device's status does too: only that one carries
// the connection's last will, so this one's retained "online" outlives a crash.
function isOnline(device) {
  const status = devices.get(device);
  if (status?.state !== "online") return false;
  if (typeof status.via !== "string") return true;
  return devices.get(status.via)?.state === "online";
}

function applyStatus(device) {
  const online = isOnline(device);
  if (watching?.device === device && !online) {
    // The device lost its broker, or its last will fired: while the video itself still
    // flows, keep the call; it ends by itself if the media stops.
    if (watching.pc.connectionState === "connected") {
      say(`${device} lost its broker connection; the video carries on.`);
      return;
    }
    stopWatching(false);
    say(`${device} went offline. Playback resumes when it is back.`);
  } else if (wanted === device && online && !watching && !unplayable.has(device)) {
    // Also after the device restarted, after a broker outage, or when a busy device frees a
    // place: every status update is a chance to play again (not before the backoff).
    scheduleWatch(device);
  } else if (wanted === device && !online && !watching) {
    say(`${device} is offline.`);
  }
}

let watchTimer = null;
// Starts a call now or when the backoff allows; a fresh session id first when the current one
// has been used.
function scheduleWatch(device) {
  clearTimeout(watchTimer);
  const wait = retryAt - Date.now();
  if (wait > 0) {
    watchTimer = setTimeout(() => scheduleWatch(device), wait);
    return;
  }
  if (sessionUsed) {
    // Reconnecting resubscribes; the retained status then starts the call.
    sessionId = newSessionId();
    sessionUsed = false;
    connectBroker(true);
    return;
  }
  if (wanted === device && !watching) watch(device);
}

// A call ended without playing (refused, unanswered): wait longer before the next one.
function backOff() {
  retryAt = Date.now() + retryDelay * 1000;
  retryDelay = Math.min(30, retryDelay * 2);
}

// What the device list and the overlay say about a device's sound.
function audioSummary(audio) {
  if (!audio) return "";
  if (audio.state === "failed") return "microphone failed";
  return audio.channels === 2 ? "stereo sound" : "sound";
}

function renderDevices() {
  const list = $("devices");
  list.replaceChildren();
  if (devices.size === 0) {
    list.innerHTML = '<li class="muted">No device has announced itself yet.</li>';
    return;
  }
  for (const [id, status] of [...devices].sort(([a], [b]) => a.localeCompare(b))) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.device = id;
    button.setAttribute("aria-pressed", String(wanted === id));
    const online = isOnline(id);
    const details = online && status.video
      ? [`${status.video.width}x${status.video.height}`, audioSummary(status.audio),
        `${status.viewers} viewer${status.viewers === 1 ? "" : "s"}`].filter(Boolean).join(" · ")
      : "offline";
    button.innerHTML = `<span class="badge ${online ? "online" : "offline"}"></span><b></b><br><small class="muted"></small>`;
    button.querySelector(".badge").textContent = online ? "online" : "offline";
    button.querySelector("b").textContent = id;
    button.querySelector("small").textContent = details;
    button.addEventListener("click", () => {
      wanted = id;
      shownCamera = id;
      showCamera(id, devices.get(id));
      unplayable.delete(id);
      retryAt = 0;
      retryDelay = 1;
      stopWatching(true);
      renderDevices();
      scheduleWatch(id);
    });
    const item = document.createElement("li");
    item.append(button);
    list.append(item);
  }
}

// The codecs a device sends, best first (a device older than VP8 support lists none: H.264).
function deviceCodecs(status) {
  const listed = status?.video?.codecs;
  return Array.isArray(listed) && listed.length ? listed.map(String) : ["H264"];
}

// Offers what the device sends, in its order (H.264, then VP8), and nothing else: the answer
// is then the cheapest stream for the board that this browser plays. Returns the codecs
// offered; none when the browser plays none of them.
function preferCodecs(transceiver, status) {
  const sent = deviceCodecs(status).map((name) => `video/${name.toLowerCase()}`);
  if (!RTCRtpReceiver.getCapabilities) return sent;
  const codecs = RTCRtpReceiver.getCapabilities("video")?.codecs ?? [];
  const playable = sent.flatMap((mime) => codecs.filter((c) => c.mimeType.toLowerCase() === mime));
  const helpers = codecs.filter((c) => /\/(rtx|red|ulpfec|flexfec-03)$/i.test(c.mimeType));
  if (playable.length && transceiver.setCodecPreferences) {
    transceiver.setCodecPreferences([...playable, ...helpers]);
  }
  return [...new Set(playable.map((c) => c.mimeType.replace(/^video\//i, "").toUpperCase()))];
}

// What to tell a viewer whose browser plays nothing the device sends: what it can do.
function unplayableAdvice(device, status) {
  const sent = deviceCodecs(status);
  const names = sent.map((name) => (name === "H264" ? "H.264" : name)).join(" or ");
  const firefox = /firefox/i.test(navigator.userAgent);
  const h264Only = sent.length === 1 && sent[0] === "H264";
  const fix = firefox && h264Only
    ? "In Firefox, turn on the OpenH264 plugin (about:addons → Plugins → OpenH264 → Always Activate; " +
      "where your distribution switched it off, set media.gmp-gmpopenh264.enabled to true in about:config), " +
      "or open this page in Chromium, Chrome, Edge or Safari."
    : "Open this page in a current Chromium, Chrome, Edge, Firefox or Safari.";
  const why = h264Only ? " (its camera encodes the video itself)" : "";
  return `${device} sends ${names}${why}, and this browser plays none of them. ${fix}`;
}

async function watch(device) {
  stopWatching(true);
  const status = devices.get(device);
  if (!status || !isOnline(device)) {
    say(`${device} is offline.`);
    return;
  }
  say(`Connecting to ${device}…`);
  stats.state = "connecting";
  stats.device = device;
  // ?relay=1 sends everything through the TURN servers in web.ice_servers: for a viewer that
  // must not reveal its address to the camera, or to check that the relay works.
  const relayOnly = new URLSearchParams(location.search).get("relay") === "1";
  const pc = new RTCPeerConnection({
    iceServers: Array.isArray(config.iceServers) ? config.iceServers : [],
    iceTransportPolicy: relayOnly ? "relay" : "all",
  });
  const session = { device, pc, remoteReady: false, early: [], stream: new MediaStream() };
  watching = session;
  sessionUsed = true;
  session.answerTimer = setTimeout(() => {
    if (watching !== session || session.remoteReady) return;
    stopWatching(true);
    backOff();
    say(`${device} did not answer; trying again…`);
    scheduleWatch(device);
  }, ANSWER_TIMEOUT_MS);
  if (!preferCodecs(pc.addTransceiver("video", { direction: "recvonly" }), status).length) {
    stopWatching(false);
    stats.state = "unsupported";
    unplayable.add(device);
    say(unplayableAdvice(device, status));
    return;
  }
  if (status.audio) pc.addTransceiver("audio", { direction: "recvonly" });
  pc.ontrack = ({ track }) => {
    session.stream.addTrack(track);
    if (track.kind === "audio") meterTrack(track);
    video.srcObject = session.stream;
    $("mute").disabled = track.kind !== "audio" && !status.audio;
  };
  pc.onicecandidate = ({ candidate }) => {
    publish(device, { type: "candidate", candidate: candidate ? candidate.toJSON() : null });
  };
  pc.onconnectionstatechange = () => {
    if (watching !== session) return;
    if (pc.connectionState === "connected") {
      stats.state = "playing";
      retryDelay = 1;
      say("");
    } else if (pc.connectionState === "failed") {
      stats.state = "failed";
      say(`The video connection to ${device} failed: no network path between this browser and ` +
        "the device was found. A STUN or TURN server may be needed.");
    } else if (pc.connectionState === "disconnected") {
      say(`The connection to ${device} is interrupted; waiting for it to come back…`);
    }
  };
  $("hangup").disabled = false;
  try {
    await pc.setLocalDescription(await pc.createOffer());
    publish(device, { type: "offer", sdp: pc.localDescription.sdp });
    session.offerSentAt = performance.now();
  } catch (err) {
    say(`This browser could not start a video session: ${err.message}`);
  }
}

async function onDeviceMessage(session, message) {
  const { pc, device } = session;
  try {
    if (message.type === "answer") {
      await pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
      session.remoteReady = true;
      for (const c of session.early.splice(0)) await pc.addIceCandidate(c);
    } else if (message.type === "candidate") {
      if (!message.candidate) return;
      if (session.remoteReady) await pc.addIceCandidate(message.candidate);
      else session.early.push(message.candidate);
    } else if (message.type === "hangup") {
      stopWatching(false);
      backOff();
      say(`${device} ended the session.`);
    } else if (message.type === "error") {
      stopWatching(false);
      backOff();
      stats.state = message.code;
      if (message.code === "unsupported") unplayable.add(device);
      const reasons = {
        busy: `${device} is busy: it is already serving as many viewers as it can. Playback starts when a place frees up.`,
        unsupported: `${unplayableAdvice(device, devices.get(device))} (${device} said: ${message.message})`,
      };
      say(reasons[message.code] ?? `${device} refused the session: ${message.message}`);
    }
  } catch (err) {
    say(`Could not set up the video from ${device}: ${err.message}`);
  }
}

function stopWatching(sendHangup) {
  if (!watching) return;
  const { pc, device, answerTimer } = watching;
  clearTimeout(answerTimer);
  watching = null;
  if (sendHangup) publish(device, { type: "hangup" });
  pc.close();
  video.srcObject = null;
  Object.assign(stats, {
    state: "idle", codec: "", fps: 0, bitrateKbps: 0, latencyMs: null, rttMs: null,
    audioCodec: "", audioLevel: null, audioPeakHz: null, audioNote: "",
    estimateKbps: null, sentKbps: null,
  });
  meter?.ctx.close();
  meter = null;
  $("overlay").textContent = "";
  $("hangup").disabled = true;
  $("mute").disabled = true;
}

// Once a second: what the overlay shows, from the standard statistics.
let previous = null;
async function updateStats() {
  const session = watching;
  if (!session) return;
  const report = await session.pc.getStats();
  let inbound = null;
  let sound = null;
  let pair = null;
  report.forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") inbound = r;
    if (r.type === "inbound-rtp" && r.kind === "audio") sound = r;
    if (r.type === "transport" && r.selectedCandidatePairId) pair = report.get(r.selectedCandidatePairId);
    if (!pair && r.type === "candidate-pair" && r.nominated && r.state === "succeeded") pair = r;
  });
  if (!inbound) return;
  const now = inbound.timestamp;
  if (previous && now > previous.timestamp) {
    const seconds = (now - previous.timestamp) / 1000;
    stats.bitrateKbps = Math.round(((inbound.bytesReceived - previous.bytesReceived) * 8) / seconds / 1000);
    stats.fps = inbound.framesPerSecond ?? Math.round((inbound.framesDecoded - previous.framesDecoded) / seconds);
  }
  previous = inbound;
  stats.codec = report.get(inbound.codecId)?.mimeType?.replace(/^video\//, "") ?? "";
  stats.width = inbound.frameWidth ?? video.videoWidth;
  stats.height = inbound.frameHeight ?? video.videoHeight;
  stats.framesDecoded = inbound.framesDecoded ?? 0;
  const lost = inbound.packetsLost ?? 0;
  const total = lost + (inbound.packetsReceived ?? 0);
  stats.packetLossPercent = total ? (100 * lost) / total : 0;
  stats.rttMs = pair?.currentRoundTripTime != null ? pair.currentRoundTripTime * 1000 : null;
  if (sound) {
    stats.audioCodec = report.get(sound.codecId)?.mimeType?.replace(/^audio\//, "") ?? "";
    stats.audioPackets = sound.packetsReceived ?? 0;
    stats.audioSamples = sound.totalSamplesReceived ?? 0;
    readMeter();
  }
  const audio = devices.get(session.device)?.audio;
  stats.audioNote = audio?.state === "failed"
    ? `no sound: the microphone failed (${audio.error ?? "unknown reason"})`
    : "";
  const line = [
    `${stats.width}x${stats.height}`, `${stats.fps} fps`, `${stats.bitrateKbps} kbit/s`,
    `loss ${stats.packetLossPercent.toFixed(1)} %`,
    `RTT ${stats.rttMs == null ? "–" : Math.round(stats.rttMs) + " ms"}`,
    stats.latencyMs == null ? null : `latency ${Math.round(stats.latencyMs)} ms`, stats.codec,
    stats.estimateKbps == null ? null
      : `link ${stats.estimateKbps} kbit/s, sent ${stats.sentKbps ?? "–"} kbit/s`,
    stats.audioCodec && !stats.audioNote ? `${stats.audioCodec} sound${
      stats.audioLevel == null ? "" : ` ${Math.round(20 * Math.log10(Math.max(stats.audioLevel, 1e-5)))} dBFS`}`
      : null,
  ].filter(Boolean);
  // Why there is no sound goes on a line of its own, so it is read whole.
  $("overlay").textContent = line.join(" · ") + (stats.audioNote ? `\n${stats.audioNote}` : "");
}

// Glass-to-glass latency from the test pattern's timestamp squares: 48 bits of Unix-epoch
// milliseconds, MSB first, 16x16 squares row-major from the top-left, bright for 1.
const canvas = document.createElement("canvas");
const context = canvas.getContext("2d", { willReadFrequently: true });
function readTimestamp() {
  const width = video.videoWidth;
  const perRow = Math.floor(width / 16);
  if (!perRow) return null;
  const rows = Math.ceil(48 / perRow);
  if (rows * 16 > video.videoHeight) return null;
  canvas.width = width;
  canvas.height = rows * 16;
  context.drawImage(video, 0, 0, width, rows * 16, 0, 0, width, rows * 16);
  const pixels = context.getImageData(0, 0, width, rows * 16).data;
  let value = 0;
  for (let bit = 0; bit < 48; bit++) {
    const x0 = (bit % perRow) * 16 + 4;
    const y0 = Math.floor(bit / perRow) * 16 + 4;
    let sum = 0;
    for (let y = y0; y < y0 + 8; y++) {
      for (let x = x0; x < x0 + 8; x++) {
        const i = (y * width + x) * 4;
        sum += 0.299 * pixels[i] + 0.587 * pixels[i + 1] + 0.114 * pixels[i + 2];
      }
    }
    const mean = sum / 64;
    if (mean > 70 && mean < 185) return null; // not a square: no test pattern here
    value = value * 2 + (mean >= 128 ? 1 : 0);
  }
  return value;
}

function onFrame() {
  if (watching && video.videoWidth) {
    // Milliseconds from the start of page navigation to the first picture shown.
    stats.firstFrameMs ??= Math.round(performance.now());
    // And from this call's offer to its first picture: what campeer and the network cost.
    if (watching.offerSentAt != null) {
      stats.offerToFirstFrameMs ??= Math.round(performance.now() - watching.offerSentAt);
    }
    const captured = readTimestamp();
    const latency = captured == null ? null : Date.now() - captured;
    stats.frameLog.push([Date.now(), latency != null && Math.abs(latency) < 3600_000 ? latency : null]);
    if (stats.frameLog.length > 4000) stats.frameLog.shift();
    if (latency != null && Math.abs(latency) < 3600_000) {
      stats.latencySamples.push(latency);
      if (stats.latencySamples.length > 4000) stats.latencySamples.shift();
      const recent = stats.latencySamples.slice(-30).sort((a, b) => a - b);
      stats.latencyMs = recent[Math.floor(recent.length / 2)];
    }
  }
  scheduleFrame();
}
function scheduleFrame() {
  if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(onFrame);
  else setTimeout(onFrame, 100);
}

async function main() {
  config = await (await fetch("config.json")).json();
  const fromUrl = new URLSearchParams(location.search).get("device");
  wanted = fromUrl ?? config.device;
  shownCamera = wanted;
  initCameraPanel({
    // A recording plays in the video element: the live session ends, and is not restarted
    // by the next status until the viewer goes back to live.
    leaveLive() {
      wanted = null;
      stopWatching(true);
      renderDevices();
      say("");
    },
    backToLive(device) {
      wanted = device;
      retryAt = 0;
      renderDevices();
      scheduleWatch(device);
    },
  });
  $("mute").addEventListener("click", () => {
    video.muted = !video.muted;
    $("mute").textContent = video.muted ? "Unmute" : "Mute";
    meter?.ctx.resume(); // browsers start Web Audio only after a click
  });
  $("fullscreen").addEventListener("click", () => $("player").requestFullscreen?.());
  $("hangup").addEventListener("click", () => {
    wanted = null;
    stopWatching(true);
    renderDevices();
    say("Hung up.");
  });
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("campeer-user", $("login-user").value);
    sessionStorage.setItem("campeer-password", $("login-password").value);
    connectBroker();
  });
  // Closing the tab hangs up. QoS 0, as waiting for an acknowledgement (or ending the
  // client) could lose it while the page unloads. MQTT.js corks its stream while it writes a
  // packet and uncorks it on a later tick (a setTimeout in browsers), which never comes once
  // the page is going: uncork here, so the hangup reaches the socket now.
  addEventListener("pagehide", () => {
    if (watching) {
      publish(watching.device, { type: "hangup" }, 0);
      const stream = client?.stream;
      for (let i = 0; i < 8 && stream?.writableCorked; i++) stream.uncork();
    }
    stopWatching(false);
  });
  setInterval(updateStats, 1000);
  scheduleFrame();
  connectBroker();
}

main().catch((err) => say(`The viewer could not start: ${err.message}`));
