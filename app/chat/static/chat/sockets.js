"use strict";
/* A WebSocket that reconnects with exponential backoff and full jitter, and resumes
 * from the last timepoint it saw, so the server replays what happened while it was
 * away. No build step: plain script, loaded before the page's own script. */

/* exported ChatSocket, compareTimepoints */

function compareTimepoints(a, b) {
  const [am, as] = String(a).split("-").map(Number);
  const [bm, bs] = String(b).split("-").map(Number);
  return am !== bm ? am - bm : as - bs;
}

function backoffDelay(attempt) {
  const base = 500;      // ms
  const cap = 30000;     // ms
  const ceiling = Math.min(cap, base * Math.pow(2, attempt));
  return Math.round(Math.random() * ceiling);  // full jitter: spread reconnect storms
}

// Close codes after which retrying cannot help.
const FINAL_CLOSE_CODES = new Set([4400, 4401, 4403, 4404]);

class ChatSocket {
  /**
   * @param {(timepoint: string) => string} pathFor  path of the topic from a timepoint
   * @param {{timepoint: string, onEvent: Function, onStatus?: Function}} options
   */
  constructor(pathFor, options) {
    this.pathFor = pathFor;
    this.timepoint = options.timepoint || "0-0";
    this.onEvent = options.onEvent;
    this.onStatus = options.onStatus || function () {};
    this.attempt = 0;
    this.stopped = false;
    this.connect();
  }

  url() {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + window.location.host + this.pathFor(this.timepoint);
  }

  connect() {
    this.onStatus("connecting");
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.onStatus("live");
    };
    ws.onmessage = (message) => {
      let data;
      try {
        data = JSON.parse(message.data);
      } catch (err) {
        return;
      }
      if (data.type === "resync") {
        // Events we missed were trimmed from the server's buffer: start afresh.
        this.stop();
        this.onStatus("reloading");
        window.location.reload();
        return;
      }
      if (data.timepoint && compareTimepoints(data.timepoint, this.timepoint) > 0) {
        this.timepoint = data.timepoint;
      }
      this.onEvent(data);
    };
    ws.onclose = (event) => {
      if (this.stopped) return;
      if (FINAL_CLOSE_CODES.has(event.code)) {
        this.onStatus(event.code === 4401 ? "logged out" : "closed");
        return;
      }
      const delay = backoffDelay(this.attempt);
      this.attempt += 1;
      this.onStatus("reconnecting");
      window.setTimeout(() => this.connect(), delay);
    };
  }

  stop() {
    this.stopped = true;
    if (this.ws) this.ws.close();
  }
}
