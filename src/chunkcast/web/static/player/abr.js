// Adaptive bitrate: a throughput estimate from segment downloads (bytes / download time)
// and the choice of a rendition that fits it.

const FAST = 0.5; // weights of the two moving averages; the estimate is the lower of them,
const SLOW = 0.85; // so it drops quickly and rises slowly
const MIN_SAMPLE_BYTES = 4000; // smaller downloads say more about latency than bandwidth
const UP_SHARE = 0.7; // a rung is chosen when it needs at most this share of the estimate
const DOWN_SHARE = 0.9; // the current rung is left when it needs more than this share
const STALL_HOLD_MS = 10000; // no switching up this long after a stall
const STORAGE_KEY = "chunkcast.bandwidth";

export class Abr {
  /** @param {{name: string, bps: number}[]} rungs lowest first */
  constructor(rungs) {
    this.rungs = rungs;
    this.fast = null;
    this.slow = null;
    this.holdUntil = 0;
    this.lastRatio = 0; // download time / segment duration of the last segment
    this.samplesSinceSwitch = 0;
    const saved = Number(globalThis.localStorage?.getItem(STORAGE_KEY));
    if (saved > 0) this.fast = this.slow = saved;
  }

  /** Bits per second we can count on, or null before any measurement. */
  get estimate() {
    return this.fast === null ? null : Math.min(this.fast, this.slow);
  }

  /** One segment download: its size, how long it took, the media time it holds. */
  sample(bytes, ms, duration) {
    this.lastRatio = duration > 0 ? ms / 1000 / duration : 0;
    this.samplesSinceSwitch += 1;
    if (bytes < MIN_SAMPLE_BYTES) return;
    const bps = (bytes * 8) / Math.max(ms, 1) * 1000;
    this.fast = this.fast === null ? bps : FAST * this.fast + (1 - FAST) * bps;
    this.slow = this.slow === null ? bps : SLOW * this.slow + (1 - SLOW) * bps;
    try {
      globalThis.localStorage?.setItem(STORAGE_KEY, String(Math.round(this.estimate)));
    } catch {
      // private mode: nothing to remember
    }
  }

  /** A stall on `current`: one rung down, and stay down for a while. */
  stalled(current) {
    this.holdUntil = performance.now() + STALL_HOLD_MS;
    const index = this._index(current);
    return this.rungs[Math.max(0, index - 1)].name;
  }

  /** The rendition to load next, given the one loading now. */
  choose(current) {
    const estimate = this.estimate;
    const index = this._index(current);
    if (estimate === null) return current;
    let fits = 0;
    this.rungs.forEach((rung, i) => {
      if (rung.bps <= estimate * UP_SHARE) fits = i;
    });
    const slowDownload = this.lastRatio > 0.8; // the buffer is draining
    if (fits < index && (this.rungs[index].bps > estimate * DOWN_SHARE || slowDownload)) {
      return this.rungs[fits].name;
    }
    if (fits > index && !slowDownload && performance.now() >= this.holdUntil
        && this.samplesSinceSwitch >= 1) {
      return this.rungs[fits].name;
    }
    return current;
  }

  switched() {
    this.samplesSinceSwitch = 0;
  }

  _index(name) {
    return Math.max(0, this.rungs.findIndex((r) => r.name === name));
  }
}

/** The rungs of a video resource, lowest first (nominal bitrate with some headroom for
 * the container and the encoder's variation). */
export function rungsOf(renditions) {
  return renditions
    .map((r) => ({ name: r.name, bps: (r.video_kbps + r.audio_kbps) * 1000 * 1.1 }))
    .sort((a, b) => a.bps - b.bps);
}
