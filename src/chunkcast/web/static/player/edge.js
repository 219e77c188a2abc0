// Playback-position helpers: holding a live stream's edge, stepping over holes in the
// buffer, and the delay behind live.

export const EDGE_AHEAD = 0.5; // s buffered ahead of the playhead at its lowest, at the edge
const CATCH_UP_RATE = 1.1; // playback rate while more than that is buffered
const SLOW_DOWN_RATE = 0.95; // playback rate while the live buffer is thin
const JUMP_AFTER = 3; // s buffered beyond EDGE_AHEAD at the lowest: jump instead of hurrying

/** Seconds buffered contiguously from the playhead. */
export function bufferedAhead(video) {
  const t = video.currentTime;
  const ranges = video.buffered;
  for (let i = 0; i < ranges.length; i++) {
    if (ranges.start(i) <= t + 0.1 && t < ranges.end(i)) return ranges.end(i) - t;
  }
  return 0;
}

/** Keeps EDGE_AHEAD seconds buffered at the lowest point of each segment period: hurries a
 * little when more is buffered, jumps when far more is, slows down a little when less.
 * (Buffer-based, so a broadcaster's clock being off does not matter.) */
export class EdgeKeeper {
  constructor(video) {
    this.video = video;
    this.samples = []; // [time ms, seconds buffered ahead]
  }

  reset() {
    this.samples = [];
  }

  /** One clock tick; returns true when it jumped. */
  hold(segmentDuration) {
    const v = this.video;
    const now = performance.now();
    const windowMs = Math.max(2, 2 * segmentDuration) * 1000;
    this.samples.push([now, bufferedAhead(v)]);
    while (this.samples.length && this.samples[0][0] < now - windowMs) this.samples.shift();
    if (now - this.samples[0][0] < windowMs * 0.8) return false; // not a whole period yet
    const low = Math.min(...this.samples.map(([, ahead]) => ahead));
    if (low > EDGE_AHEAD + JUMP_AFTER) {
      v.currentTime += low - EDGE_AHEAD;
      this.samples = [];
      return true;
    }
    if (low > EDGE_AHEAD + 0.3) v.playbackRate = CATCH_UP_RATE;
    else if (low < EDGE_AHEAD * 0.5) v.playbackRate = SLOW_DOWN_RATE; // margin for late ones
    else if (low > EDGE_AHEAD * 0.8 && low < EDGE_AHEAD + 0.1) v.playbackRate = 1;
    return false;
  }
}

/** Stuck in front of a hole in the buffer (timestamps of consecutive segments need not
 * touch exactly): step over it. */
export function skipGap(video) {
  if (video.paused || video.seeking || video.readyState >= 3) return;
  const t = video.currentTime;
  const ranges = video.buffered;
  for (let i = 0; i < ranges.length; i++) {
    if (ranges.start(i) <= t && t < ranges.end(i) - 0.2) return;
    if (ranges.start(i) > t && ranges.start(i) - t < 1.5) {
      video.currentTime = ranges.start(i) + 0.01;
      return;
    }
  }
}

/** Wall clock now minus the capture time of media time `t` (null when unknown). */
export function delayBehindLive(timeline, t) {
  // The segment that started last before `t` (`t` may sit in a hairline hole between two).
  const entry = timeline.before(t);
  if (!entry || entry.captured_at === null) return null;
  return (Date.now() - (entry.captured_at + (t - entry.start) * 1000)) / 1000;
}
