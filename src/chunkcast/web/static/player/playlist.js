// Media playlists (RFC 8216), just what seeking needs: each segment's seq, duration, URI
// and capture time.

const SEGMENT_NAME = /(\d+)\.m4s(?:\?|$)/;

/**
 * Parse a media playlist. A segment's seq is taken from its file name when it has one
 * (`00000042.m4s`), else counted from EXT-X-MEDIA-SEQUENCE. A skipped seq is listed by the
 * server as an EXT-X-GAP entry: it keeps its place but is left out (there is nothing to
 * fetch).
 */
export function parseMediaPlaylist(text, baseUrl) {
  const lines = text.split(/\r?\n/);
  let sequence = 0;
  let duration = null;
  let dateTime = null;
  let gap = false;
  let ended = false;
  const segments = [];
  for (const raw of lines) {
    const line = raw.trim();
    if (line.startsWith("#EXT-X-MEDIA-SEQUENCE:")) {
      sequence = parseInt(line.slice(22), 10) || 0;
    } else if (line.startsWith("#EXTINF:")) {
      duration = parseFloat(line.slice(8));
    } else if (line.startsWith("#EXT-X-PROGRAM-DATE-TIME:")) {
      dateTime = line.slice(25);
    } else if (line === "#EXT-X-GAP") {
      gap = true;
    } else if (line === "#EXT-X-ENDLIST") {
      ended = true;
    } else if (line && !line.startsWith("#") && duration !== null) {
      const url = new URL(line, baseUrl).toString();
      const named = SEGMENT_NAME.exec(new URL(url).pathname);
      const seq = named ? parseInt(named[1], 10) : sequence;
      if (!gap) segments.push({ seq, duration, url, captured_at: dateTime });
      sequence = seq + 1;
      duration = null;
      dateTime = null;
      gap = false;
    }
  }
  return { segments, ended };
}

/** Fetch and parse a media playlist; null when there is none (yet). */
export async function loadMediaPlaylist(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) return null;
  return parseMediaPlaylist(await response.text(), response.url || url);
}
