"use strict";
// Unit tests of chat/static/chat/sockets.js with Node's built-in test runner and a fake
// WebSocket (run by run-tests when node is installed: node --test tests/js/).
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const vm = require("node:vm");

function load() {
  const sockets = [];
  const timers = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      sockets.push(this);
    }
    close() {}
  }
  const context = {
    window: {
      location: {protocol: "https:", host: "chat.example.org", reload() { context.reloaded = true; }},
      setTimeout: (fn, ms) => timers.push({fn, ms}),
    },
    WebSocket: FakeWebSocket,
    Math, JSON, Number, String, Set,
  };
  vm.createContext(context);
  const source = fs.readFileSync(
    path.join(__dirname, "..", "..", "chat", "static", "chat", "sockets.js"), "utf8");
  vm.runInContext(source + "\nthis.ChatSocket = ChatSocket; this.compareTimepoints = compareTimepoints;" +
    " this.backoffDelay = backoffDelay;", context);
  return {context, sockets, timers};
}

test("timepoints compare by milliseconds then sequence", () => {
  const {context} = load();
  assert.ok(context.compareTimepoints("1700000000001-0", "1700000000000-9") > 0);
  assert.ok(context.compareTimepoints("1700000000000-2", "1700000000000-10") < 0);
  assert.equal(context.compareTimepoints("5-1", "5-1"), 0);
});

test("backoff grows exponentially, is capped, and is jittered", () => {
  const {context} = load();
  for (let attempt = 0; attempt < 12; attempt++) {
    const ceiling = Math.min(30000, 500 * 2 ** attempt);
    for (let i = 0; i < 50; i++) {
      const delay = context.backoffDelay(attempt);
      assert.ok(delay >= 0 && delay <= ceiling, `attempt ${attempt}: ${delay}`);
    }
  }
  const samples = new Set(Array.from({length: 50}, () => context.backoffDelay(6)));
  assert.ok(samples.size > 10, "delays should be spread out");
});

test("reconnects after a drop and resumes from the last timepoint seen", () => {
  const {context, sockets, timers} = load();
  const events = [];
  new context.ChatSocket((tp) => "/ws/room/7?since=" + tp, {
    timepoint: "100-0",
    onEvent: (e) => events.push(e),
  });
  assert.equal(sockets[0].url, "wss://chat.example.org/ws/room/7?since=100-0");
  sockets[0].onopen();
  sockets[0].onmessage({data: JSON.stringify({type: "message.created", timepoint: "200-0", payload: {id: 1}})});
  sockets[0].onmessage({data: JSON.stringify({type: "message.created", timepoint: "150-3", payload: {id: 2}})});
  sockets[0].onmessage({data: "not json"});
  assert.equal(events.length, 2);
  sockets[0].onclose({code: 1006});
  assert.equal(timers.length, 1);
  timers[0].fn();
  assert.equal(sockets[1].url, "wss://chat.example.org/ws/room/7?since=200-0");
});

test("does not retry after a refusal and reloads on resync", () => {
  const {context, sockets, timers} = load();
  const statuses = [];
  new context.ChatSocket((tp) => "/ws/user/3/" + tp, {
    timepoint: "0-0", onEvent() {}, onStatus: (s) => statuses.push(s),
  });
  sockets[0].onclose({code: 4403});
  assert.equal(timers.length, 0);
  assert.equal(statuses.at(-1), "closed");
  new context.ChatSocket((tp) => "/ws/user/3/" + tp, {timepoint: "0-0", onEvent() {}});
  sockets[1].onmessage({data: JSON.stringify({type: "resync"})});
  assert.equal(context.reloaded, true);
  sockets[1].onclose({code: 1000});
  assert.equal(timers.length, 0, "a stopped socket stays closed");
});
