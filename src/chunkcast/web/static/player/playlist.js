// Media playlists (RFC 8216), just what seeking needs: each segment's seq, duration, URI
// and capture time.

const SEGMENT_NAME = /(\d+)\.m4s(?:\?|$)/;

/**
 * Parse a media playlist. A segment's seq is taken from its file name when it has one
 * (`00000042.m4s`): the server marks a skipped seq with a discontinuity, after which
 * counting from EXT-X-MEDIA-SEQUENCE would be off by the gap.
 */
export function parseMediaPlaylist(text, baseUrl) {
  const lines = text.split(/\r?\n/);
  let sequence = 0;
  let duration = null;
  let dateTime = null;
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
    } else if (line === "#EXT-X-ENDLIST") {
      ended = true;
    } else if (line && !line.startsWith("#") && duration !== null) {
      const url = new URL(line, baseUrl).toString();
      const named = SEGMENT_NAME.exec(new URL(url).pathname);
      const seq = named ? parseInt(named[1], 10) : sequence;
      segments.push({ seq, duration, url, captured_at: dateTime });
      sequence = seq + 1;
      duration = null;
      dateTime = null;
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
