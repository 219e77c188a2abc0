// Playback URLs of one video. Signed playback (private videos): the `e` and `st` query
// parameters of the watch page are passed on to the API, the playlists and the sockets;
// segment URLs arrive signed from the server and are used as given.

const SIGNATURE_PARAMS = ["e", "st"];

/** The `e`/`st` parameters of a query string, or null when it has none. */
export function signatureOf(search) {
  const query = new URLSearchParams(search);
  const found = SIGNATURE_PARAMS.filter((name) => query.has(name));
  if (found.length === 0) return null;
  const out = new URLSearchParams();
  for (const name of found) out.set(name, query.get(name));
  return out;
}

/** `url` with the signature parameters (and `extra`) added to its query. */
export function withQuery(url, signature, extra = {}) {
  const u = new URL(url, location.href);
  for (const [name, value] of Object.entries(extra)) {
    if (value !== null && value !== undefined) u.searchParams.set(name, String(value));
  }
  if (signature) for (const [name, value] of signature) u.searchParams.set(name, value);
  return u.toString();
}

/** The API resource of a video (public GET; signed for private videos). */
export function videoUrl(videoId, signature) {
  return withQuery(`/api/v1/videos/${encodeURIComponent(videoId)}`, signature);
}

/** URL builders for one video resource (`playback.hls`, `playback.ws` from the API). */
export function playbackUrls(video, signature) {
  const hls = new URL(video.playback.hls, location.href).toString();
  const playBase = hls.replace(/master\.m3u8(\?.*)?$/, "");
  const wsBase = video.playback.ws
    ? video.playback.ws
    : `${location.origin.replace(/^http/, "ws")}/ws/${video.id}`;
  return {
    master: withQuery(hls, signature),
    playlist: (rendition, dvr = false) =>
      withQuery(`${playBase}${rendition}/index.m3u8`, signature, dvr ? { dvr: 1 } : {}),
    socket: (rendition, since = null) =>
      withQuery(`${wsBase}/${rendition}`, signature, { since }),
  };
}
