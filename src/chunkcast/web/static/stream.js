// A stream's dashboard: its key, the commands that broadcast to it, and its live status.

import {
  adminToken, ago, api, ApiError, clearError, copyText, installTokenForm, shellQuote, showError,
} from "./api.js";
import { recallKey, rememberKey } from "./stream_keys.js";

const POLL_MS = 1500;
const BRIDGE = "tcp://127.0.0.1:9000"; // where the broadcaster listens for plain ffmpeg
const NO_KEY = "YOUR_STREAM_KEY";
const FINISHED = new Set(["ended", "failed"]);

const dashboard = document.getElementById("dashboard");
const streamId = dashboard.dataset.streamId;
const server = dashboard.dataset.server;
// A private stream's title and status are only given with the admin token (the page
// carries neither).
const isPrivate = "private" in dashboard.dataset;
const $ = (id) => document.getElementById(id);

const keyField = $("stream-key");
const showKeyButton = $("show-key");
const copyKeyButton = $("copy-key");
const keyError = $("key-error");
const sourceInput = $("broadcast-source");
const chunkSelect = $("chunk-seconds");
const statusBadge = $("stream-status");
const statusError = $("status-error");
const endButton = $("end-stream");
const copyStatus = $("copy-status");

let key = recallKey(streamId);
let revealed = false;

installTokenForm();

// --- the key and the commands -------------------------------------------------------------

function broadcastArgs(source, shownKey) {
  return ["chunkcast", "broadcast", shellQuote(source), "--server", shellQuote(server),
    "--stream", streamId, "--key", shellQuote(shownKey),
    "--chunk-seconds", chunkSelect.value].join(" ");
}

function commands(shownKey) {
  const source = sourceInput.value.trim() || "testsrc";
  const listen = `${BRIDGE}?listen=1`;
  return {
    broadcast: broadcastArgs(source, shownKey),
    listen: `${broadcastArgs(listen, shownKey)} --input-options '-f mpegts'`,
    ffmpeg: "ffmpeg -re -i input.mp4 -c:v libx264 -preset veryfast -tune zerolatency -c:a aac "
      + `-f mpegts ${BRIDGE}`,
  };
}

// Where OBS and other publishers point (the ingest's ports; empty when it is off).
const ingestHost = dashboard.dataset.ingestHost || new URL(server).hostname;
const rtmpPort = Number(dashboard.dataset.rtmpPort || 0);
const srtPort = Number(dashboard.dataset.srtPort || 0);

function publishUrls(shownKey) {
  const host = ingestHost.includes(":") ? `[${ingestHost}]` : ingestHost;
  return {
    server: rtmpPort ? `rtmp://${host}:${rtmpPort}/live` : "off on this server",
    srt: srtPort ? `srt://${host}:${srtPort}?streamid=${encodeURIComponent(shownKey)}`
      : "off on this server",
  };
}

function render() {
  keyField.value = key;
  keyField.type = revealed ? "text" : "password";
  keyField.placeholder = key ? "" : "not on this device: make a new key";
  showKeyButton.textContent = revealed ? "Hide key" : "Show key";
  showKeyButton.disabled = !key;
  copyKeyButton.disabled = !key;
  // The key stays masked in the commands too until it is revealed; copying gives the real one.
  const shown = commands(!key ? NO_KEY : revealed ? key : "•".repeat(12));
  $("broadcast-command").textContent = shown.broadcast;
  $("listen-command").textContent = shown.listen;
  $("ffmpeg-command").textContent = shown.ffmpeg;
  const urls = publishUrls(!key ? NO_KEY : revealed ? key : "•".repeat(12));
  $("obs-server").textContent = urls.server;
  $("srt-url").textContent = urls.srt;
}

async function copy(text, what) {
  const copied = await copyText(text);
  copyStatus.textContent = copied ? `Copied ${what}.` : `Could not copy: select the ${what} by hand.`;
  if (copied && !key && what.includes("command")) {
    copyStatus.textContent += " It has no key in it: make a new key first.";
  }
}

showKeyButton.addEventListener("click", () => {
  revealed = !revealed;
  render();
});
copyKeyButton.addEventListener("click", () => copy(key, "key"));
$("copy-broadcast").addEventListener("click", () => copy(commands(key || NO_KEY).broadcast, "broadcast command"));
$("copy-listen").addEventListener("click", () => copy(commands(key || NO_KEY).listen, "listener command"));
$("copy-ffmpeg").addEventListener("click", () => copy(commands(key || NO_KEY).ffmpeg, "ffmpeg command"));
$("copy-obs-server").addEventListener("click", () => copy(publishUrls(NO_KEY).server, "server"));
$("copy-srt").addEventListener("click", () => copy(publishUrls(key || NO_KEY).srt, "SRT URL"));
sourceInput.addEventListener("input", render);
chunkSelect.addEventListener("change", render);

$("new-key").addEventListener("click", async () => {
  clearError(keyError);
  if (!window.confirm("Make a new stream key? The current key stops working at once.")) return;
  try {
    const answer = await api(`/api/v1/streams/${streamId}/key`, { method: "POST", admin: true });
    key = answer.stream_key;
    rememberKey(streamId, key);
    revealed = true;
    render();
    keyField.focus();
  } catch (error) {
    showError(keyError, error);
  }
});

// --- live status --------------------------------------------------------------------------

function showStatus(stream) {
  if (isPrivate) {
    $("stream-title").textContent = stream.title;
    document.title = `${stream.title} · stream · chunkcast`;
  }
  statusBadge.textContent = stream.status;
  statusBadge.className = `badge status-${stream.status}`;
  $("stream-viewers").textContent = String(stream.viewers);
  const last = $("last-chunk");
  if (stream.last_chunk_at) {
    const at = new Date(stream.last_chunk_at);
    last.dateTime = at.toISOString();
    last.textContent = `${at.toLocaleTimeString()} (${ago(at)})`;
  } else {
    last.removeAttribute("datetime");
    last.textContent = "none yet";
  }
  endButton.disabled = FINISHED.has(stream.status);
}

// The publisher's figures: the stream resource has them (with the admin token) whichever
// ingest process the publisher is connected to, as that process last reported them.
function showIngest(ingest) {
  $("ingest-figures").hidden = !ingest;
  $("keyframe-warning").hidden = !ingest?.keyframe_warning;
  if (!ingest) return;
  const others = ingest.publishers > 1
    ? ` (and ${ingest.publishers - 1} more on other ingest processes)` : "";
  const since = ingest.connected_at
    ? `, since ${new Date(ingest.connected_at).toLocaleTimeString()}` : "";
  $("ingest-protocol").textContent = `${ingest.protocol.toUpperCase()}${since}${others}`;
  $("ingest-bitrate").textContent = `${(ingest.bitrate_kbps / 1000).toFixed(2)} Mb/s`;
  $("ingest-keyframes").textContent = ingest.keyframe_interval_s === null ? "–"
    : `${ingest.keyframe_interval_s.toFixed(2)} s`;
  $("ingest-chunks").textContent = ingest.chunks_skipped
    ? `${ingest.chunks_cut} (${ingest.chunks_skipped} skipped)` : String(ingest.chunks_cut);
}

let pollProblem = ""; // shown once, not at every poll (showing a token problem focuses the form)

async function poll() {
  let finished = false;
  try {
    // The publisher's figures come with the admin token (a public stream's status without).
    const stream = await api(`/api/v1/streams/${streamId}`,
      { admin: isPrivate || Boolean(adminToken()) });
    clearError(statusError);
    pollProblem = "";
    showStatus(stream);
    showIngest(stream.ingest);
    finished = FINISHED.has(stream.status);
  } catch (error) {
    // To anyone but the admin a private stream is unknown.
    const problem = isPrivate && error instanceof ApiError && error.status === 404
      ? new ApiError(404, "http_error",
        "The admin token was refused: a private stream's status needs it")
      : error;
    if (problem.message !== pollProblem || statusError.hidden) {
      pollProblem = problem.message;
      showError(statusError, problem);
    }
  }
  if (!finished) setTimeout(poll, POLL_MS);
}

endButton.addEventListener("click", async () => {
  clearError(statusError);
  if (!window.confirm("End the stream? Viewers see it end; it becomes a replay.")) return;
  endButton.disabled = true;
  try {
    await api(`/api/v1/streams/${streamId}/end`, { method: "POST", admin: true });
  } catch (error) {
    showError(statusError, error);
    endButton.disabled = false;
  }
});

render();
poll();
