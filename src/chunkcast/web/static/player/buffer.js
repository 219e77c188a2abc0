// A MediaSource with one SourceBuffer (audio and video are muxed in each segment), and its
// operations run one at a time: a SourceBuffer takes one append or remove at a time.

const MIME = "video/mp4";

export function mimeFor(codecs) {
  return `${MIME}; codecs="${codecs}"`;
}

export class MediaBuffer {
  constructor(video) {
    this.video = video;
    this.source = new MediaSource();
    this.sourceBuffer = null;
    this.codecs = null;
    this.initOf = null; // the rendition whose init segment was appended last
    this._queue = Promise.resolve();
    this.opened = new Promise((resolve) => {
      this.source.addEventListener("sourceopen", () => resolve(), { once: true });
    });
    video.src = URL.createObjectURL(this.source);
  }

  /** Run `op(sourceBuffer)` after the operations before it; resolves at its updateend. */
  run(op) {
    const next = this._queue.then(() => this._run(op));
    this._queue = next.catch(() => {});
    return next;
  }

  _run(op) {
    return new Promise((resolve, reject) => {
      const sb = this.sourceBuffer;
      if (!sb || this.source.readyState === "closed") {
        reject(new Error("no source buffer"));
        return;
      }
      const done = () => {
        sb.removeEventListener("updateend", done);
        sb.removeEventListener("error", failed);
        resolve();
      };
      const failed = () => {
        sb.removeEventListener("updateend", done);
        sb.removeEventListener("error", failed);
        reject(new Error("source buffer error"));
      };
      sb.addEventListener("updateend", done);
      sb.addEventListener("error", failed);
      try {
        if (!op(sb)) done(); // nothing to wait for
      } catch (error) {
        sb.removeEventListener("updateend", done);
        sb.removeEventListener("error", failed);
        reject(error);
      }
    });
  }

  /** Append an init segment of `rendition`; creates the SourceBuffer or changes its type. */
  async appendInit(rendition, codecs, bytes) {
    await this.opened;
    if (!this.sourceBuffer) {
      this.sourceBuffer = this.source.addSourceBuffer(mimeFor(codecs));
      this.sourceBuffer.mode = "segments";
      this.codecs = codecs;
    } else if (codecs !== this.codecs && typeof this.sourceBuffer.changeType === "function") {
      await this.run((sb) => { sb.changeType(mimeFor(codecs)); return false; });
      this.codecs = codecs;
    }
    await this.append(bytes);
    this.initOf = rendition;
  }

  /** Append media; on a full buffer, drop what is well behind the playhead and retry. */
  async append(bytes) {
    // Appending to an ended MediaSource (a seek back after the end) opens it again.
    const op = (sb) => { sb.appendBuffer(bytes); return true; };
    try {
      await this.run(op);
    } catch (error) {
      if (error?.name !== "QuotaExceededError") throw error;
      await this.removeBehind(this.video.currentTime - 5);
      await this.run(op);
    }
  }

  /** Remove everything before media time `t`. */
  removeBehind(t) {
    const ranges = this.video.buffered;
    if (ranges.length === 0 || t <= ranges.start(0)) return Promise.resolve();
    return this.run((sb) => { sb.remove(0, t); return true; });
  }

  /** Set the media duration (finite for VOD; live streams stay open-ended). */
  setDuration(seconds) {
    return this.run(() => {
      const end = this.video.buffered.length
        ? this.video.buffered.end(this.video.buffered.length - 1) : 0;
      if (this.source.readyState === "open" && seconds >= end) this.source.duration = seconds;
      return false;
    });
  }

  /** Live: seeking is allowed anywhere in [0, far future) — data arrives where we seek. */
  openEnded() {
    return this.run(() => {
      if (this.source.readyState !== "open") return false;
      this.source.duration = Infinity;
      if (typeof this.source.setLiveSeekableRange === "function") {
        this.source.setLiveSeekableRange(0, 1e9);
      }
      return false;
    });
  }

  endOfStream() {
    return this.run(() => {
      if (this.source.readyState === "open") this.source.endOfStream();
      return false;
    });
  }
}
