// Live updates for the board: the event stream names the visit that changed, and the page fetches that row again.
// Without this script the board still works: every action is a form post, and a reload shows the latest.
(function () {
  "use strict";
  var root = document.querySelector("[data-board]");
  if (!root || !window.EventSource || !window.fetch) { return; }
  var body = document.getElementById("board-body");
  var notice = document.getElementById("board-notice");
  // The server's clock, not the browser's, decides how long someone has waited.
  var skew = Date.parse(root.dataset.now) - Date.now();

  function tick() {
    root.querySelectorAll("[data-since]").forEach(function (span) {
      var minutes = Math.max(0, Math.floor((Date.now() + skew - Date.parse(span.dataset.since)) / 60000));
      span.textContent = minutes + " min";
    });
  }
  window.setInterval(tick, 30000);

  // A row being replaced keeps what the person was doing in it: the focused control and a chosen room.
  function swap(old, fresh) {
    var focused = old.contains(document.activeElement) ? document.activeElement.id : "";
    old.querySelectorAll("select[id]").forEach(function (select) {
      var twin = fresh.querySelector("#" + CSS.escape(select.id));
      if (twin && select.value) { twin.value = select.value; }
    });
    old.replaceWith(fresh);
    if (focused && document.getElementById(focused)) { document.getElementById(focused).focus(); }
  }

  function parseRows(html) {
    var template = document.createElement("template");
    template.innerHTML = "<table><tbody>" + html + "</tbody></table>";
    return template.content.querySelector("tr[data-visit]");
  }

  function get(url) {
    return fetch(url, {credentials: "same-origin", headers: {"Accept": "text/html"}}).then(function (response) {
      if (response.status === 401 || response.redirected) { window.location.reload(); return null; }
      if (!response.ok) { throw new Error(String(response.status)); }
      return response.status === 204 ? "" : response.text();
    });
  }

  // Answers can come back out of order (a row asked for twice in quick succession): each row keeps the
  // number of its latest request, and an older answer never replaces what a newer one showed.
  var latest = {};
  function ticket(visitId) {
    latest[visitId] = (latest[visitId] || 0) + 1;
    return latest[visitId];
  }

  function refreshAll() {
    var asked = {};
    body.querySelectorAll("tr[data-visit]").forEach(function (tr) { asked[tr.dataset.visit] = ticket(tr.dataset.visit); });
    return get(root.dataset.rows).then(function (html) {
      if (html === null) { return; }
      var holder = document.createElement("div");
      holder.innerHTML = html;
      body.querySelectorAll("tr[data-visit]").forEach(function (tr) {
        var fresh = holder.querySelector("#" + CSS.escape(tr.id));
        if (fresh && latest[tr.dataset.visit] === asked[tr.dataset.visit]) { swap(tr, fresh); }
      });
      if (holder.querySelectorAll("tr[data-visit]").length !== body.querySelectorAll("tr[data-visit]").length ||
          !!holder.querySelector(".alerts") !== !!body.querySelector(".alerts")) {
        body.innerHTML = holder.innerHTML;
      } else if (holder.querySelector(".alerts")) {
        body.querySelector(".alerts").replaceWith(holder.querySelector(".alerts"));
      }
      root.dataset.updated = String(Date.now());
    }).catch(showStale);
  }

  function refreshRow(visitId) {
    var current = document.getElementById("visit-" + visitId);
    if (!current) { return refreshAll(); }
    var mine = ticket(String(visitId));
    return get(root.dataset.rows + "&visit=" + encodeURIComponent(visitId)).then(function (html) {
      if (html === null || latest[String(visitId)] !== mine) { return; }
      current = document.getElementById("visit-" + visitId);
      if (!current) { return; }
      var fresh = html ? parseRows(html) : null;
      if (fresh) { swap(current, fresh); } else { current.remove(); }
      root.dataset.updated = String(Date.now());
    }).catch(showStale);
  }

  function showStale() {
    notice.textContent = "The board could not be updated. Reload the page to see the latest.";
    notice.hidden = false;
  }

  function onChange(e) {
    var data = JSON.parse(e.data);
    if (data.visit_id) { refreshRow(data.visit_id); } else { refreshAll(); }
  }

  var events = new EventSource(root.dataset.events);
  // Once a form is on its way this page is done; an update now would only race the answer.
  document.addEventListener("submit", function () { events.close(); }, true);
  ["visit", "flag", "change"].forEach(function (kind) { events.addEventListener(kind, onChange); });
  // A message to the records system stopped: the rows of that patient (the event names their messages' key).
  events.addEventListener("message", function (e) {
    var key = JSON.parse(e.data).messages_of;
    body.querySelectorAll("tr[data-visit]").forEach(function (tr) {
      if (tr.dataset.messages === key) { refreshRow(tr.dataset.visit); }
    });
  });
  events.addEventListener("resync", refreshAll);
  var paused = "Live updates are paused because many pages are open; they come back by themselves. " +
    "Reload to see the latest.";
  var missed = false;  // the stream broke or was refused: changes may have gone by unseen
  events.addEventListener("error", function () { missed = true; });
  events.addEventListener("live", function () {
    root.dataset.live = "connected";
    if (notice.textContent === paused) { notice.hidden = true; notice.textContent = ""; }
    if (missed) { missed = false; refreshAll(); }
  });
  events.addEventListener("busy", function () {
    root.dataset.live = "busy";
    notice.textContent = paused;
    notice.hidden = false;
  });
}());
