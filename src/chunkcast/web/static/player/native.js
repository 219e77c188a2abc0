// Where Media Source Extensions are missing (iOS Safari), the browser plays the HLS master
// playlist itself: quality is its own choice, and the controls work on the <video> alone.
// The master URL goes as given (no cache-busting arguments: a live playlist's reloads are
// the browser's, blocking ones under LL-HLS), and the browser picks where live playback
// starts (the playlist's hold-back); nothing here seeks unless the viewer does.

export class NativePlayer extends EventTarget {
  constructor(video, info, urls) {
    super();
    this.video = video;
    this.mode = "native";
    this.rungs = [];
    this.auto = true;
    this.target = null;
    this.rendition = null;
    this.status = info.status;
    this.live = info.live; // the server's rule (domain/videos.py)
    this.atLiveEdge = this.live;
    this.delay = null;
    this.viewers = null;
    this.stalls = 0;
    this.setQuality = null;
    this._master = urls.master;
  }

  start() {
    const v = this.video;
    v.addEventListener("waiting", () => { this.stalls += 1; });
    v.addEventListener("timeupdate", () => {
      this.delay = this._delay();
      this.dispatchEvent(new Event("update"));
    });
    v.src = this._master;
    this.play();
  }

  play() {
    this.video.play().catch(() => {
      this.video.muted = true;
      this.video.play().catch(() => {});
    });
  }

  range() {
    const s = this.video.seekable;
    return s.length ? [s.start(0), s.end(s.length - 1)] : null;
  }

  seek(t) {
    this.atLiveEdge = false;
    this.video.currentTime = t;
  }

  goLive() {
    const range = this.range();
    if (range) this.video.currentTime = range[1];
    this.atLiveEdge = true;
  }

  refreshPlaylist() {}

  // Glass-to-glass, as the MSE player shows it: Safari maps media time 0 to a date from the
  // segments' EXT-X-PROGRAM-DATE-TIME (their capture time) with getStartDate().
  _delay() {
    if (!this.live || typeof this.video.getStartDate !== "function") return null;
    const start = this.video.getStartDate().getTime();
    if (!Number.isFinite(start)) return null;
    return (Date.now() - start) / 1000 - this.video.currentTime;
  }

  close() {
    this.video.removeAttribute("src");
  }
}

/** Whether this browser can play HLS by itself. */
export function playsHlsNatively(video) {
  return video.canPlayType("application/vnd.apple.mpegurl") !== "";
}
