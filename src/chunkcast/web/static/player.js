// The watch page: load the video resource, pick the MSE player (or the browser's own HLS
// where MSE is missing), bind the controls. `window.chunkcastPlayer` is the player, for
// tests and the curious: {rendition, target, auto, delay, stalls, live, atLiveEdge, …}.

import { Engine } from "./player/engine.js";
import { NativePlayer, playsHlsNatively } from "./player/native.js";
import { bindControls, showMessage } from "./player/ui.js";
import { playbackUrls, signatureOf, videoUrl } from "./player/urls.js";

const POLL_MS = 2000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The video resource, once it can be played (a live stream: once its ladder is known). */
async function playableVideo(url) {
  for (;;) {
    const response = await fetch(url, { cache: "no-store" });
    if (response.status === 401 || response.status === 403) {
      throw new Error("This video is private, or its link has expired.");
    }
    if (response.status >= 400 && response.status < 500) {
      throw new Error("This video does not exist.");
    }
    if (response.ok) {
      const video = await response.json();
      showTitle(video);
      if (video.status === "failed") throw new Error(`Processing failed: ${video.error ?? ""}`);
      // `playable` and `live` are the server's rules about statuses (domain/videos.py).
      if (video.renditions.length > 0 && (video.playable || video.live)) {
        return video;
      }
      showMessage(video.kind === "live" ? "Waiting for the stream to start…"
        : `Processing… ${video.progress ?? 0}%`);
    }
    await sleep(POLL_MS);
  }
}

function showTitle(video) {
  document.getElementById("video-title").textContent = video.title;
  document.title = `${video.title} · chunkcast`;
}

async function main() {
  const root = document.getElementById("watch");
  const video = document.getElementById("video");
  const signature = signatureOf(location.search);
  const api = videoUrl(root.dataset.videoId, signature);
  let info;
  try {
    info = await playableVideo(api);
  } catch (error) {
    showMessage(error.message);
    return;
  }
  showMessage(null);
  const urls = { ...playbackUrls(info, signature), api };
  const mse = "MediaSource" in window && MediaSource.isTypeSupported('video/mp4; codecs="avc1.42c01e"');
  if (!mse && !playsHlsNatively(video)) {
    showMessage("This browser cannot play these streams.");
    return;
  }
  const player = mse ? new Engine(video, info, urls) : new NativePlayer(video, info, urls);
  player.mode ??= "mse";
  window.chunkcastPlayer = player;
  bindControls(player, video);
  player.start();
  root.dataset.ready = "true";
}

main();
