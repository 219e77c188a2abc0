// The shared timeline of a video: every rendition's segment `seq` covers the same media
// time (timestamps are carried from the source), so one map seq -> {start, duration,
// captured_at} serves them all. Segment messages give exact starts (`pts_start`); playlist
// entries (seeking further back than the socket replayed) are placed from their durations,
// counting from the nearest exact one.

export class Timeline {
  constructor() {
    this.entries = new Map(); // seq -> {seq, start, duration, captured_at, exact}
  }

  /** A segment message: exact start and capture time. */
  noteSegment(message) {
    this.entries.set(message.seq, {
      seq: message.seq,
      start: message.pts_start,
      duration: message.duration,
      captured_at: message.captured_at ? Date.parse(message.captured_at) : null,
      exact: true,
    });
  }

  /** Playlist segments (in seq order): durations, capture times, placed by the anchors. */
  mergePlaylist(segments) {
    if (segments.length === 0) return;
    const anchorIndex = segments.findIndex((s) => this.entries.get(s.seq)?.exact);
    // Without any exact start, count from 0 for now: segment messages replace the guesses.
    let start = anchorIndex < 0 ? 0 : this.entries.get(segments[anchorIndex].seq).start;
    const starts = new Array(segments.length);
    const from = Math.max(anchorIndex, 0);
    for (let i = from; i < segments.length; i++) {
      starts[i] = this.entries.get(segments[i].seq)?.exact ? this.entries.get(segments[i].seq).start : start;
      start = starts[i] + segments[i].duration;
    }
    start = starts[from];
    for (let i = from - 1; i >= 0; i--) {
      start -= segments[i].duration;
      starts[i] = start;
    }
    segments.forEach((s, i) => {
      if (this.entries.get(s.seq)?.exact) return;
      this.entries.set(s.seq, {
        seq: s.seq, start: starts[i], duration: s.duration,
        captured_at: s.captured_at ? Date.parse(s.captured_at) : null, exact: false,
      });
    });
  }

  get(seq) {
    return this.entries.get(seq);
  }

  /** Entries in seq order. */
  sorted() {
    return [...this.entries.values()].sort((a, b) => a.seq - b.seq);
  }

  /** The entry covering media time `t` (or the nearest one after it), or undefined. */
  at(t) {
    let best;
    for (const entry of this.entries.values()) {
      if (entry.start <= t + 1e-3 && t < entry.start + entry.duration) return entry;
      if (entry.start > t && (!best || entry.start < best.start)) best = entry;
    }
    return best;
  }

  /** The entry with the latest start at or before media time `t`, or undefined. */
  before(t) {
    let best;
    for (const entry of this.entries.values()) {
      if (entry.start <= t + 1e-3 && (!best || entry.start > best.start)) best = entry;
    }
    return best;
  }

  /** [first start, last end] of what is known, or null. */
  range() {
    let first = null;
    let last = null;
    for (const e of this.entries.values()) {
      if (first === null || e.start < first) first = e.start;
      if (last === null || e.start + e.duration > last) last = e.start + e.duration;
    }
    return first === null ? null : [first, last];
  }

  /** Forget entries before `seq` (long live streams). */
  forgetBefore(seq) {
    for (const key of this.entries.keys()) if (key < seq) this.entries.delete(key);
  }
}
