// Stream keys are shown by the API once; this tab keeps them (sessionStorage) so the
// dashboard can show the key after creating a stream or making a new key.

const PREFIX = "chunkcast.streamKey.";

export function rememberKey(streamId, key) {
  try {
    sessionStorage.setItem(PREFIX + streamId, key);
  } catch {
    // storage disabled: the dashboard offers a new key instead
  }
}

export function recallKey(streamId) {
  try {
    return sessionStorage.getItem(PREFIX + streamId) || "";
  } catch {
    return "";
  }
}
