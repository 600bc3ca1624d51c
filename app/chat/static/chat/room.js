"use strict";
/* global ChatSocket */
/* exported setupRoomPage */

function setupRoomPage() {
  const config = JSON.parse(document.getElementById("page-config").textContent);
  const list = document.getElementById("messages");
  const status = document.getElementById("socket-status");
  const form = document.getElementById("message-form");
  const errors = document.getElementById("message-errors");
  const csrfInput = form.querySelector("input[name=csrfmiddlewaretoken]");

  function addMessage(m) {
    if (list.querySelector('[data-message-id="' + Number(m.id) + '"]')) return;  // already shown
    const empty = list.querySelector(".empty");
    if (empty) empty.remove();
    const li = document.createElement("li");
    li.className = "message";
    li.dataset.messageId = String(m.id);
    const sender = document.createElement("span");
    sender.className = "sender";
    sender.textContent = m.sender;           // textContent: never parsed as HTML
    const time = document.createElement("time");
    time.dateTime = m.posted;
    time.textContent = m.posted.slice(0, 16).replace("T", " ");
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = m.message;
    li.append(sender, " ", time, " ", text);
    list.append(li);
    li.scrollIntoView({block: "nearest"});
  }

  function decisionForm(requestId, decision, label) {
    const f = document.createElement("form");
    f.method = "post";
    f.className = "inline";
    f.action = config.decideUrlTemplate
      .replace("/requests/0/", "/requests/" + Number(requestId) + "/")
      .replace(/admit\/$/, decision + "/");
    const token = document.createElement("input");
    token.type = "hidden";
    token.name = "csrfmiddlewaretoken";
    token.value = csrfInput.value;
    const button = document.createElement("button");
    button.type = "submit";
    button.textContent = label;
    f.append(token, button);
    return f;
  }

  function addRequest(jr) {
    const requests = document.getElementById("join-requests");
    if (!requests || requests.querySelector('[data-request-id="' + Number(jr.id) + '"]')) return;
    const empty = requests.querySelector(".empty");
    if (empty) empty.remove();
    const li = document.createElement("li");
    li.dataset.requestId = String(jr.id);
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = jr.user.username;
    li.append(who, " ", decisionForm(jr.id, "admit", "Admit"), " ",
      decisionForm(jr.id, "deny", "Deny"));
    requests.append(li);
  }

  function settleRequest(jr) {
    const row = document.querySelector('#join-requests [data-request-id="' + Number(jr.id) + '"]');
    if (row) row.remove();
    if (jr.status === "admitted") {
      const members = document.getElementById("members");
      const li = document.createElement("li");
      li.textContent = jr.user.username;
      members.append(li);
    }
  }

  new ChatSocket(
    (timepoint) => "/ws/room/" + Number(config.roomId) + "?since=" + encodeURIComponent(timepoint),
    {
      timepoint: config.timepoint,
      onStatus: (text) => { status.textContent = text; },
      onEvent: (event) => {
        if (event.type === "message.created") addMessage(event.payload);
        else if (event.type === "join_request.created") addRequest(event.payload);
        else if (event.type === "join_request.admitted" || event.type === "join_request.denied") {
          settleRequest(event.payload);
        }
      },
    }
  );

  form.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    errors.textContent = "";
    let response;
    try {
      response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: {"Accept": "application/json"},
        credentials: "same-origin",
      });
    } catch (err) {
      errors.textContent = "Could not send: the network is unavailable.";
      return;
    }
    if (response.status === 201) {
      const data = await response.json();
      addMessage(data.message);
      form.reset();
    } else if (response.status === 400) {
      const data = await response.json();
      const messages = (data.errors.message || []).map((e) => e.message);
      errors.textContent = messages.join(" ") || "The message was refused.";
    } else {
      errors.textContent = "Could not send (HTTP " + response.status + ").";
    }
  });
}
