"use strict";
/* global ChatSocket */
/* exported setupHomePage */

function setupHomePage() {
  const config = JSON.parse(document.getElementById("page-config").textContent);
  const list = document.getElementById("room-list");
  const status = document.getElementById("socket-status");

  function row(roomId) {
    return list.querySelector('[data-room-id="' + Number(roomId) + '"]');
  }

  function render(li, room, pending) {
    li.replaceChildren();
    li.className = pending ? "pending" : "";
    if (pending) {
      const title = document.createElement("span");
      title.className = "title";
      title.textContent = room.title;
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = "waiting to be admitted";
      li.append(title, " ", tag);
    } else {
      const link = document.createElement("a");
      link.className = "title";
      link.href = config.roomUrlTemplate.replace("/0/", "/" + Number(room.id) + "/");
      link.textContent = room.title;
      li.append(link);
    }
  }

  function insertSorted(li, room) {
    // Keep the list sorted by (title, id) like the server renders it.
    const rows = Array.from(list.querySelectorAll("li[data-room-id]"));
    const after = rows.find((other) => {
      const title = other.querySelector(".title").textContent;
      const id = Number(other.dataset.roomId);
      return title > room.title || (title === room.title && id > room.id);
    });
    const empty = list.querySelector(".empty");
    if (empty) empty.remove();
    list.insertBefore(li, after || null);
  }

  new ChatSocket(
    (timepoint) => "/ws/user/" + Number(config.userId) + "/" + timepoint,
    {
      timepoint: config.timepoint,
      onStatus: (text) => { status.textContent = text; },
      onEvent: (event) => {
        const jr = event.payload;
        if (!jr || !jr.room) return;
        const existing = row(jr.room.id);
        if (event.type === "join_request.denied") {
          if (existing) existing.remove();
        } else if (event.type === "join_request.created" || event.type === "join_request.admitted") {
          const pending = event.type === "join_request.created";
          const li = existing || document.createElement("li");
          li.dataset.roomId = String(jr.room.id);
          render(li, jr.room, pending);
          if (!existing) insertSorted(li, jr.room);
        }
      },
    }
  );
}
