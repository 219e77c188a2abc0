// Create a live stream, keep its key for this tab, and go to its dashboard.

import { api, clearError, installTokenForm, showError } from "./api.js";
import { rememberKey } from "./stream_keys.js";

const form = document.getElementById("stream-form");
const titleInput = document.getElementById("stream-title");
const createButton = document.getElementById("stream-create");
const errorBox = document.getElementById("stream-error");

installTokenForm();

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError(errorBox);
  const title = titleInput.value.trim();
  if (!title) {
    showError(errorBox, "Give the stream a title.");
    titleInput.focus();
    return;
  }
  createButton.disabled = true;
  try {
    const stream = await api("/api/v1/streams", { method: "POST", admin: true, body: { title } });
    rememberKey(stream.id, stream.stream_key); // the API shows the key this once
    window.location.assign(`/streams/${stream.id}`);
  } catch (error) {
    showError(errorBox, error);
    createButton.disabled = false;
  }
});
