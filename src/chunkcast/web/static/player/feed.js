// One WebSocket per (video, rendition), as the design says: `init`, then `segment`/`gap`
// messages in seq order, `status` and `viewers`. A dropped connection is resumed with
// `?since=<last seq received>` after a backoff, so nothing is missed or received twice.

const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000];

export class Feed {
  /**
   * @param {object} opts
   * @param {string} opts.rendition
   * @param {(since: number|null) => string} opts.url socket URL for a `since`
   * @param {number|null} opts.since replay everything after this seq (null: the live edge)
   * @param {(message: object, feed: Feed) => void} opts.onMessage
   * @param {(feed: Feed) => boolean} opts.shouldRetry asked after an unexpected close
   */
  constructor({ rendition, url, since, onMessage, shouldRetry }) {
    this.rendition = rendition;
    this.init = null;
    this.items = new Map(); // seq -> segment or gap message
    this.lastSeq = since; // highest seq received (or the starting `since`)
    this.finalSeq = null; // once the status says nothing more will come: the last seq
    this.status = null;
    this.failures = 0;
    this._url = url;
    this._onMessage = onMessage;
    this._shouldRetry = shouldRetry;
    this._socket = null;
    this._timer = null;
    this._closed = false;
    this._connect();
  }

  _connect() {
    const socket = new WebSocket(this._url(this.lastSeq));
    this._socket = socket;
    socket.onmessage = (event) => {
      if (this._socket !== socket) return;
      this.failures = 0;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      this._take(message);
    };
    socket.onclose = (event) => {
      if (this._socket !== socket || this._closed) return;
      this._socket = null;
      this.lastClose = event.code;
      // 4403/4410: the signed link is refused or has expired; trying again cannot help.
      if (event.code === 4403 || event.code === 4410) return;
      if (!this._shouldRetry(this)) return;
      // 1008 before a live stream's first segment is transcoded; 4008 when we fell behind;
      // anything else is a dropped connection. All of them: try again, a little later.
      const delay = BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)];
      this.failures += 1;
      this._timer = setTimeout(() => this._connect(), delay * (0.8 + Math.random() * 0.4));
    };
  }

  _take(message) {
    if (message.type === "init") {
      this.init = message;
    } else if (message.type === "segment" || message.type === "gap") {
      if (this.lastSeq !== null && message.seq <= this.lastSeq) return; // already have it
      message.rendition = this.rendition;
      message.arrived = performance.now();
      this.items.set(message.seq, message);
      this.lastSeq = message.seq;
    } else if (message.type === "status") {
      this.status = message.status;
      // The status comes after the replay: "ended"/"ready" means every segment was sent.
      if (message.status !== "live" && message.status !== "idle") this.finalSeq = this.lastSeq;
    }
    this._onMessage(message, this);
  }

  /** The lowest seq held that is a segment (not a gap), or undefined. */
  firstSegment() {
    let first;
    for (const [seq, message] of this.items) {
      if (message.type === "segment" && (first === undefined || seq < first)) first = seq;
    }
    return first;
  }

  /** Forget messages before `seq` (live streams grow without bound). */
  forgetBefore(seq) {
    for (const key of this.items.keys()) if (key < seq) this.items.delete(key);
  }

  close() {
    this._closed = true;
    clearTimeout(this._timer);
    if (this._socket) this._socket.close(1000);
    this._socket = null;
  }
}
