// The MSE player: segment-ready messages from the rendition's socket, fetched and appended
// in seq order into one SourceBuffer; the live-edge controller; seeking; bitrate switches.
//
// A switch opens a socket for the new rendition with `since` = the last seq taken, so its
// replay continues exactly where the old one stops; until the new rendition's next segment
// is there, the old one's is used when the buffer runs short, so a switch never stalls.

import { Abr, rungsOf } from "./abr.js";
import { MediaBuffer } from "./buffer.js";
import { EDGE_AHEAD, EdgeKeeper, bufferedAhead, delayBehindLive, skipGap } from "./edge.js";
import { Feed } from "./feed.js";
import { loadMediaPlaylist } from "./playlist.js";
import { Timeline } from "./timeline.js";

const FETCH_AHEAD = 12; // s fetched ahead away from the live edge (VOD, DVR)
const KEEP_BEHIND = 30; // s kept behind the playhead
const SHORT_BUFFER = 0.3; // s: below this a switch takes the old rendition's next segment
const SWITCH_WAIT_MS = 1000; // or when the new rendition's is this much later than the old's
const SETTLE_MS = 1500; // after a seek or a jump, `waiting` is not a stall
const TICK_MS = 200;
const FETCH_TIMEOUT_MS = 8000; // plus twice the segment's duration: then the download is retried

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const LIVE_STATES = new Set(["live", "idle"]);

export class Engine extends EventTarget {
  /**
   * @param {HTMLVideoElement} video
   * @param {object} info the video resource (`GET /api/v1/videos/{id}`)
   * @param {object} urls from `playbackUrls`, plus `api` (the resource URL)
   */
  constructor(video, info, urls) {
    super();
    this.video = video;
    this.info = info;
    this.urls = urls;
    this.status = info.status;
    this.live = info.live;
    this.rungs = rungsOf(info.renditions);
    this.abr = new Abr(this.rungs);
    this.timeline = new Timeline();
    this.buffer = new MediaBuffer(video);
    this.feeds = new Map(); // rendition -> Feed (the target's, and the previous one's)
    this.target = this.abr.choose(this.rungs[0]?.name);
    this.previous = null; // the feed switched away from, until the target takes over
    this.auto = true;
    this.rendition = null; // rendition of the last segment appended
    this.nextSeq = null;
    this.lastAppended = null;
    this.startAt = null; // {seq, offset}: where the playhead goes once seq is appended
    this.awaitingStart = false; // live edge: choose the start once the replay is in
    this.positioned = false;
    this.atLiveEdge = this.live;
    this.ended = false;
    this.durationSet = false;
    this.generation = 0;
    this.abort = null;
    this.settleUntil = 0;
    this.stalls = 0;
    this.stallStart = null;
    this.longestStallMs = 0;
    this.switches = [];
    this.viewers = null;
    this.delay = null;
    this.closed = false;
    this._edge = new EdgeKeeper(video);
    this._wake = null;
    this._inits = new Map(); // rendition -> init segment bytes
  }

  /** Start loading (at the live edge, or from the beginning). */
  start() {
    const v = this.video;
    v.addEventListener("waiting", () => this._onWaiting());
    for (const name of ["playing", "timeupdate"]) v.addEventListener(name, () => this._onProgress());
    v.addEventListener("pause", () => { if (!v.ended && this.positioned) this.atLiveEdge = false; });
    if (this.live) this._startAtEdge();
    else this._openTarget(-1);
    this._timer = setInterval(() => this._tick(), TICK_MS);
    this._loop();
  }

  // -- sockets ---------------------------------------------------------------------------

  _openFeed(rendition, since) {
    const feed = new Feed({
      rendition, since,
      url: (s) => this.urls.socket(rendition, s),
      onMessage: (message, f) => this._onMessage(message, f),
      shouldRetry: (f) => !this.closed && this.feeds.get(f.rendition) === f
        && f.finalSeq === null && (this.live || f.items.size === 0 || f.lastClose !== 1008),
    });
    this.feeds.set(rendition, feed);
    return feed;
  }

  _openTarget(since) {
    const old = this.feeds.get(this.target);
    if (old) old.close();
    return this._openFeed(this.target, since);
  }

  _dropPrevious() {
    if (!this.previous) return;
    this.previous.close();
    if (this.feeds.get(this.previous.rendition) === this.previous) {
      this.feeds.delete(this.previous.rendition);
    }
    this.previous = null;
  }

  _onMessage(message, feed) {
    if (this.feeds.get(feed.rendition) !== feed) return;
    if (message.type === "segment") {
      this.timeline.noteSegment(message);
      if (!this._playlistLoaded) this._loadPlaylist();
    } else if (message.type === "status") {
      this.status = message.status;
      this.live = LIVE_STATES.has(message.status);
      if (!this.live) this.atLiveEdge = false;
      if (this.awaitingStart && feed.rendition === this.target) this._chooseEdgeStart(feed);
    } else if (message.type === "viewers") {
      this.viewers = message.count;
    }
    this._notify();
    this._wakeUp();
  }

  // -- where to start --------------------------------------------------------------------

  _startAtEdge() {
    this._reset();
    this.atLiveEdge = true;
    this.awaitingStart = true;
    this._dropPrevious();
    this._openTarget(null);
  }

  /** The replay of the last few segments is in: start far enough back that EDGE_AHEAD
   * seconds stay buffered when the next segment arrives. */
  _chooseEdgeStart(feed) {
    this.awaitingStart = false;
    const segments = [...feed.items.values()].filter((m) => m.type === "segment")
      .sort((a, b) => a.seq - b.seq);
    if (segments.length === 0) return; // nothing yet: the first segment to come starts
    const last = segments[segments.length - 1].duration;
    let total = 0;
    let start = null;
    for (let i = segments.length - 1; i >= 0; i--) {
      total += segments[i].duration;
      start = segments[i].seq;
      if (total >= last + EDGE_AHEAD + 0.25) break;
    }
    this.nextSeq = start;
    this.startAt = { seq: start, offset: Math.max(0, total - last - EDGE_AHEAD) };
  }

  _reset() {
    this.generation += 1;
    if (this.abort) this.abort.abort();
    this.nextSeq = null;
    this.startAt = null;
    this.positioned = false;
    this.ended = false;
    this._edge.reset();
  }

  // -- loading ---------------------------------------------------------------------------

  async _loop() {
    while (!this.closed) {
      const generation = this.generation;
      let progressed = false;
      try {
        progressed = await this._step(generation);
      } catch (error) {
        if (generation === this.generation && error?.name !== "AbortError") {
          console.warn("player:", error);
          await sleep(500);
        }
      }
      if (!progressed) await this._idle(250);
    }
  }

  _idle(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this._wake = () => { clearTimeout(timer); resolve(); };
    });
  }

  _wakeUp() {
    const wake = this._wake;
    this._wake = null;
    if (wake) wake();
  }

  async _step(generation) {
    const feed = this.feeds.get(this.target);
    if (this.nextSeq === null) {
      const first = this.awaitingStart ? undefined : feed?.firstSegment();
      if (first === undefined) return false;
      this.nextSeq = first;
      this.startAt = { seq: first, offset: 0 };
    }
    const seq = this.nextSeq;
    if (this.positioned && this._aheadOf(seq) > this._fetchAhead()) return false;
    const message = this._pick(seq);
    if (!message) {
      this._maybeEnd(feed);
      return false;
    }
    if (message.type === "gap" || this._isBuffered(seq)) {
      this.nextSeq = seq + 1;
      if (message.type === "segment" && this.startAt?.seq === seq) this._position();
      return true;
    }
    await this._ensureInit(message.rendition, generation);
    if (generation !== this.generation) return true;
    const abort = new AbortController();
    this.abort = abort;
    // A download that hangs is given up (and tried again) rather than waited for forever.
    const timer = setTimeout(() => abort.abort(), FETCH_TIMEOUT_MS + message.duration * 2000);
    const began = performance.now();
    let bytes;
    try {
      const response = await fetch(message.url, { signal: abort.signal });
      if (!response.ok) throw new Error(`segment ${seq}: HTTP ${response.status}`);
      bytes = await response.arrayBuffer();
    } finally {
      clearTimeout(timer);
    }
    this.abr.sample(bytes.byteLength, performance.now() - began, message.duration);
    if (generation !== this.generation) return true;
    await this._ensureInit(message.rendition, generation);
    await this.buffer.append(bytes);
    if (generation !== this.generation) return true;
    this._appended(message);
    return true;
  }

  _appended(message) {
    this.rendition = message.rendition;
    this.lastAppended = message.seq;
    this.nextSeq = message.seq + 1;
    if (this.startAt && this.startAt.seq === message.seq) this._position();
    if (message.rendition === this.target) this._dropPrevious();
    if (!this.live && !this.durationSet && this.feeds.get(this.target)?.finalSeq != null) {
      const range = this.timeline.range();
      if (range) this.buffer.setDuration(range[1]).then(() => { this.durationSet = true; }, () => {});
    }
    if (this.auto) {
      const want = this.abr.choose(this.target);
      const down = this.rungs.findIndex((r) => r.name === want)
        < this.rungs.findIndex((r) => r.name === this.target);
      if (want !== this.target && (down || !this.previous)) this._switch(want, "auto");
    }
    this._housekeeping();
    this._notify();
  }

  _pick(seq) {
    const found = this.feeds.get(this.target)?.items.get(seq);
    if (found) return found;
    // Switching: the new rendition's segment is late (renditions are transcoded in
    // parallel, one may finish later); don't let the buffer run dry waiting for it.
    const fallback = this.previous?.items.get(seq);
    if (fallback && (bufferedAhead(this.video) < SHORT_BUFFER
                     || performance.now() - fallback.arrived > SWITCH_WAIT_MS)) {
      return fallback;
    }
    return null;
  }

  async _ensureInit(rendition, generation) {
    if (this.buffer.initOf === rendition) return;
    const feed = this.feeds.get(rendition) ?? this.previous;
    let codecs = feed?.init?.codecs ?? this._codecsOf(rendition);
    for (let tries = 0; !codecs && tries < 10; tries++) {
      // Known once the first segment is stored; the init message may predate that.
      await sleep(300);
      await this._refreshInfo();
      codecs = this._codecsOf(rendition);
      if (generation !== this.generation) return;
    }
    codecs ??= this.info.fallback_codecs; // the server's, as its playlists say
    let bytes = this._inits.get(rendition);
    if (!bytes) {
      const url = feed?.init?.init_url;
      if (!url) throw new Error(`no init segment for ${rendition} yet`);
      const response = await fetch(url);
      if (!response.ok) throw new Error(`init ${rendition}: HTTP ${response.status}`);
      bytes = await response.arrayBuffer();
      this._inits.set(rendition, bytes);
    }
    const first = this.buffer.sourceBuffer === null;
    await this.buffer.appendInit(rendition, codecs, bytes);
    if (first && this.live) await this.buffer.openEnded();
  }

  _codecsOf(rendition) {
    return this.info.renditions.find((r) => r.name === rendition)?.codecs ?? null;
  }

  async _refreshInfo() {
    try {
      const response = await fetch(this.urls.api, { cache: "no-store" });
      if (response.ok) this.info = await response.json();
    } catch {
      // keep the old one
    }
  }

  async _loadPlaylist() {
    this._playlistLoaded = true;
    try {
      const playlist = await loadMediaPlaylist(this.urls.playlist(this.target, this.live));
      if (playlist) this.timeline.mergePlaylist(playlist.segments);
      this._notify();
    } catch {
      this._playlistLoaded = false;
    }
  }

  /** Fetch the segment list again (live: the DVR window grows). */
  refreshPlaylist() {
    if (this.live) this._loadPlaylist();
  }

  _position() {
    const entry = this.timeline.get(this.startAt.seq);
    const t = entry.start + this.startAt.offset;
    this.startAt = null;
    this.positioned = true;
    this.settleUntil = performance.now() + SETTLE_MS;
    this.video.currentTime = t;
    this.play();
  }

  _maybeEnd(feed) {
    if (this.ended || !feed || feed.finalSeq === null || this.nextSeq <= feed.finalSeq) return;
    if (!this.buffer.sourceBuffer) return;
    this.ended = true;
    this.buffer.endOfStream().catch(() => {});
  }

  _housekeeping() {
    const t = this.video.currentTime;
    const ranges = this.video.buffered;
    if (ranges.length && t - KEEP_BEHIND > ranges.start(0) + 10) {
      this.buffer.removeBehind(t - KEEP_BEHIND).catch(() => {});
    }
    if (this.live && this.nextSeq !== null) {
      for (const feed of this.feeds.values()) feed.forgetBefore(this.nextSeq - 30);
      this.timeline.forgetBefore(this.nextSeq - 7200);
    }
  }

  // -- buffer arithmetic -----------------------------------------------------------------

  _fetchAhead() {
    return this.live && this.atLiveEdge ? Infinity : FETCH_AHEAD;
  }

  _aheadOf(seq) {
    const entry = this.timeline.get(seq);
    return entry ? entry.start - this.video.currentTime : bufferedAhead(this.video);
  }

  _isBuffered(seq) {
    const entry = this.timeline.get(seq);
    if (!entry) return false;
    const ranges = this.video.buffered;
    for (let i = 0; i < ranges.length; i++) {
      if (ranges.start(i) <= entry.start + 0.1
          && ranges.end(i) >= entry.start + entry.duration - 0.1) return true;
    }
    return false;
  }

  // -- the clock -------------------------------------------------------------------------

  _tick() {
    const v = this.video;
    if (this.positioned) skipGap(v);
    if (this.live && this.atLiveEdge && this.positioned && !v.paused && !v.seeking) {
      const last = this.timeline.get(this.lastAppended);
      if (this._edge.hold(last?.duration ?? 1)) this.settleUntil = performance.now() + SETTLE_MS;
    } else if (v.playbackRate !== 1) {
      v.playbackRate = 1;
    }
    this.delay = this._delay();
    this._notify();
  }

  _delay() {
    if (!this.live || !this.positioned) return null;
    return delayBehindLive(this.timeline, this.video.currentTime);
  }

  _onWaiting() {
    const v = this.video;
    if (!this.positioned || v.seeking || performance.now() < this.settleUntil) return;
    if (this.stallStart !== null) return;
    this.stalls += 1;
    this.stallStart = performance.now();
    if (this.auto) {
      const lower = this.abr.stalled(this.target);
      if (lower !== this.target) this._switch(lower, "stall");
    }
  }

  _onProgress() {
    if (this.stallStart === null || this.video.readyState < 3) return;
    this.longestStallMs = Math.max(this.longestStallMs, performance.now() - this.stallStart);
    this.stallStart = null;
  }

  // -- controls --------------------------------------------------------------------------

  play() {
    const v = this.video;
    v.play().catch(() => {
      // Autoplay with sound refused: play muted (the mute button turns it back on).
      v.muted = true;
      v.play().catch(() => {});
      this._notify();
    });
  }

  /** Manual quality (`"auto"` or a rendition name). */
  setQuality(name) {
    this.auto = name === "auto";
    if (this.auto) {
      const want = this.abr.choose(this.target);
      if (want !== this.target) this._switch(want, "auto");
    } else if (this.rungs.some((r) => r.name === name)) {
      this._switch(name, "manual");
    }
    this._notify();
  }

  _switch(name, why) {
    if (name === this.target) return;
    this.switches.push({ from: this.target, to: name, why, at: performance.now() });
    this._dropPrevious();
    this.previous = this.feeds.get(this.target) ?? null;
    this.target = name;
    this.abr.switched();
    let since;
    if (this.awaitingStart || (this.nextSeq === null && this.live)) since = null;
    else if (this.nextSeq === null) since = -1;
    else since = this.nextSeq - 1;
    this._openFeed(name, since);
    this._wakeUp();
  }

  /** Play from media time `t` (VOD, or back in a live stream's DVR window). */
  seek(t) {
    const entry = this.timeline.at(t);
    if (!entry) return;
    const range = this.timeline.range();
    if (this.live) this.atLiveEdge = range !== null && t >= range[1] - 1.5 && this.atLiveEdge;
    this._reset();
    this.positioned = true;
    this.settleUntil = performance.now() + SETTLE_MS;
    this.nextSeq = entry.seq;
    this._dropPrevious();
    const feed = this.feeds.get(this.target);
    if (!feed || !(feed.items.has(entry.seq) || feed.lastSeq < entry.seq)) {
      this._openTarget(entry.seq - 1); // replays from there (then carries on live)
    }
    this.video.currentTime = Math.max(t, entry.start);
    this._wakeUp();
    this._notify();
  }

  /** Back to the live edge. */
  goLive() {
    if (!this.live) return;
    this._startAtEdge();
    this._wakeUp();
    this._notify();
  }

  /** [start, end] media time of the seekable timeline, or null. */
  range() {
    return this.timeline.range();
  }

  _notify() {
    this.dispatchEvent(new Event("update"));
  }

  close() {
    this.closed = true;
    clearInterval(this._timer);
    for (const feed of this.feeds.values()) feed.close();
    if (this.previous) this.previous.close();
    this._wakeUp();
  }
}
