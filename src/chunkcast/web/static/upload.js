// The upload page: create the video, PUT the file straight to storage (in parts for big
// files on S3), complete, then follow the transcoding until the video plays.

import { api, ApiError, clearError, errorMessage, installTokenForm, showError } from "./api.js";

const PART_ATTEMPTS = 4;
const POLL_MS = 700;
// Browsers set these themselves and refuse to let scripts set them.
const BROWSER_HEADERS = new Set(["content-length", "host", "connection"]);

const form = document.getElementById("upload-form");
const fileInput = document.getElementById("upload-file");
const titleInput = document.getElementById("upload-title");
const startButton = document.getElementById("upload-start");
const errorBox = document.getElementById("upload-error");
const progressBox = document.getElementById("upload-progress");
const uploadBar = document.getElementById("upload-bar");
const uploadPercent = document.getElementById("upload-percent");
const transcodeBar = document.getElementById("transcode-bar");
const transcodePercent = document.getElementById("transcode-percent");
const statusLine = document.getElementById("upload-status");
const done = document.getElementById("upload-done");
const watchLink = document.getElementById("watch-link");

let busy = false;

installTokenForm();

fileInput.addEventListener("change", () => {
  const file = fileInput.files[0];
  if (file && !titleInput.value.trim()) titleInput.value = file.name.replace(/\.[^.]+$/, "");
});

window.addEventListener("beforeunload", (event) => {
  if (busy) event.preventDefault(); // leaving now would abandon the upload
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (busy) return;
  clearError(errorBox);
  const file = fileInput.files[0];
  if (!file) {
    showError(errorBox, "Choose a video file first.");
    fileInput.focus();
    return;
  }
  const title = titleInput.value.trim() || file.name;
  setBusy(true);
  try {
    await upload(file, title);
  } catch (error) {
    showError(errorBox, error);
  } finally {
    setBusy(false);
  }
});

function setBusy(value) {
  busy = value;
  startButton.disabled = value;
  fileInput.disabled = value;
  titleInput.disabled = value;
}

async function upload(file, title) {
  const created = await api("/api/v1/videos", {
    method: "POST", admin: true, body: { title, size: file.size },
  });
  resetProgress();
  statusLine.textContent = `Uploading ${file.name}…`;
  const target = created.upload;
  const showSent = (sent) => {
    const percent = file.size ? Math.min(100, Math.floor((sent / file.size) * 100)) : 100;
    uploadBar.value = percent;
    uploadPercent.textContent = `${percent}%`;
  };
  let body;
  if (target.upload_id) {
    body = { upload_id: target.upload_id, parts: await putParts(target, file, showSent) };
  } else {
    await put(target.method, target.url, target.headers, file, showSent);
  }
  showSent(file.size);
  statusLine.textContent = "Uploaded; starting the transcode…";
  const video = await api(`/api/v1/videos/${created.id}/complete`, {
    method: "POST", admin: true, body,
  });
  await follow(video);
}

function resetProgress() {
  progressBox.hidden = false;
  done.hidden = true;
  uploadBar.value = 0;
  uploadPercent.textContent = "0%";
  transcodeBar.value = 0;
  transcodePercent.textContent = "waiting for the upload";
}

/** One PUT with upload progress; resolves to the XHR (for its ETag). */
function put(method, url, headers, blob, onSent) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method || "PUT", url);
    for (const [name, value] of Object.entries(headers || {})) {
      if (!BROWSER_HEADERS.has(name.toLowerCase())) xhr.setRequestHeader(name, value);
    }
    xhr.upload.addEventListener("progress", (event) => onSent(event.loaded));
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(xhr);
        return;
      }
      const detail = errorMessage(xhr.responseText) || xhr.responseText.slice(0, 200);
      reject(new ApiError(xhr.status, "storage",
        `Storage refused the upload${detail ? `: ${detail}` : ""}`));
    });
    // A cross-origin bucket without CORS rules for this site fails here too.
    xhr.addEventListener("error", () => reject(new ApiError(0, "network",
      "The upload to storage failed (network error, or the storage does not allow this site)")));
    xhr.send(blob);
  });
}

/** Each part to its own URL (a failed part is sent again on its own); returns the ETags. */
async function putParts(target, file, onSent) {
  const parts = [];
  let sent = 0;
  for (const part of target.parts) {
    const start = (part.number - 1) * target.part_size;
    const blob = file.slice(start, start + target.part_size);
    let xhr;
    for (let attempt = 1; ; attempt += 1) {
      try {
        xhr = await put("PUT", part.url, {}, blob, (loaded) => onSent(sent + loaded));
        break;
      } catch (error) {
        if (attempt >= PART_ATTEMPTS) throw error;
        await sleep(500 * 2 ** attempt);
      }
    }
    const etag = xhr.getResponseHeader("ETag");
    if (!etag) {
      throw new ApiError(0, "storage", "Storage did not show the part's ETag to this page: "
        + "its CORS rules must expose the ETag header");
    }
    parts.push({ number: part.number, etag });
    sent += blob.size;
    onSent(sent);
  }
  return parts;
}

/** Poll the video until it is ready (show the watch link) or failed (show why). */
async function follow(video) {
  for (;;) {
    transcodeBar.value = video.progress;
    transcodePercent.textContent = `${video.progress}% · ${video.status}`;
    if (video.status === "ready") {
      statusLine.textContent = `“${video.title}” is ready.`;
      watchLink.href = `/watch/${video.id}`;
      watchLink.textContent = `Watch “${video.title}”`;
      done.hidden = false;
      watchLink.focus();
      return;
    }
    if (video.status === "failed") {
      statusLine.textContent = "Transcoding failed.";
      throw new Error(`The video could not be processed: ${video.error || "unknown error"}`);
    }
    statusLine.textContent = video.status === "processing" ? "Transcoding…" : `Status: ${video.status}…`;
    await sleep(POLL_MS);
    try {
      video = await api(`/api/v1/videos/${video.id}`);
    } catch (error) {
      if (error instanceof ApiError && error.status >= 400 && error.status < 500) throw error;
      showError(errorBox, error); // transient: keep polling
    }
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
