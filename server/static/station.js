// Live updates for a station page: readings, device states and sessions arrive as Server-Sent Events.
// Without this script the page still works: every action is a form post.
(function () {
  "use strict";
  var root = document.querySelector("[data-station-page]");
  if (!root || !window.EventSource) { return; }
  var rows = {};
  document.querySelectorAll("tr[data-row]").forEach(function (tr) { rows[tr.dataset.row] = tr; });
  var notice = document.getElementById("page-notice");
  var form = document.getElementById("vitals-form");

  function ago(iso) {
    var seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (seconds < 5) { return "just now"; }
    if (seconds < 120) { return seconds + " s ago"; }
    return Math.round(seconds / 60) + " min ago";
  }
  function tick() {
    document.querySelectorAll("time[data-at]").forEach(function (t) { t.textContent = ago(t.dataset.at); });
  }
  tick();
  window.setInterval(tick, 1000);

  function typedSomething() {
    return Object.keys(rows).some(function (key) { return rows[key].dataset.typed === "1"; });
  }

  if (form) {
    form.addEventListener("input", function (event) {
      var tr = event.target.closest("tr[data-row]");
      if (!tr || event.target.readOnly) { return; }
      tr.dataset.typed = "1";
      tr.querySelector("[data-source]").value = "typed";
      tr.querySelector("[data-status]").textContent = "Typed";
    });
  }

  function setStatus(cell, text, at) {
    cell.textContent = text;
    if (at) {
      var time = document.createElement("time");
      time.dataset.at = at;
      time.setAttribute("datetime", at);
      time.textContent = ago(at);
      cell.appendChild(document.createTextNode(", "));
      cell.appendChild(time);
    }
  }

  function onReading(data) {
    var tr = rows[data.row];
    var at = Date.parse(data.measured_at);
    if (!tr || at <= Date.parse(tr.dataset.since)) { return; }
    var cell = tr.querySelector("[data-status]");
    var flags = data.flag_text.length ? " · " + data.flag_text.join(", ") : "";
    if (data.in_progress) { setStatus(cell, "Measuring…" + flags); return; }
    if (!data.usable) {
      if (tr.dataset.typed !== "1") { setStatus(cell, (data.flag_text.join(", ") || "No reading") + " · last good value kept"); }
      return;
    }
    if (tr.dataset.typed === "1") { return; }
    // The newest measurement wins, as on the server: a row fed by two devices never goes back in time.
    if (tr.dataset.shownAt && at < Number(tr.dataset.shownAt)) { return; }
    tr.dataset.shownAt = String(at);
    tr.hidden = false;
    tr.querySelector("[data-value]").value = data.value;
    var reading = tr.querySelector("[data-reading]");
    if (reading) { reading.value = data.reading_id; }
    var retake = root.querySelector('li[data-retake="' + CSS.escape(data.row) + '"]');
    if (retake) {
      retake.hidden = false;
      retake.querySelector("[data-retake-value]").textContent = data.value + " " + data.unit_text;
    }
    tr.querySelector("[data-source]").value = "device";
    var unit = tr.querySelector("[data-unit]");
    if (unit) { unit.value = data.unit; }
    setStatus(cell, "From " + data.device_id + flags, data.measured_at);
  }

  function onDevice(data) {
    var item = root.querySelector('li[data-device="' + CSS.escape(data.device_id) + '"]');
    if (!item) { return; }
    item.className = "device state-" + data.state;
    item.querySelector("[data-state]").textContent = data.state_text;
    item.querySelector("[data-flags]").textContent = data.flags.map(function (f) { return f.replace(/_/g, " "); }).join(", ");
    item.querySelector("[data-error]").textContent =
      data.last_error && data.state !== "connected" ? "Last error: " + data.last_error : "";
  }

  function refresh() {
    if (typedSomething()) {
      notice.textContent = "This station changed. Send or reload the page to see it.";
      notice.hidden = false;
    } else {
      window.location.reload();
    }
  }

  var events = new EventSource(root.dataset.events);
  // Once a form is on its way, this page is done: a reload now would cancel the
  // navigation and lose its answer (the confirmation message among it).
  document.addEventListener("submit", function () { events.close(); }, true);
  events.addEventListener("reading", function (e) { onReading(JSON.parse(e.data)); });
  events.addEventListener("device", function (e) { onDevice(JSON.parse(e.data)); });
  events.addEventListener("session", function (e) {
    var data = JSON.parse(e.data);
    if (String(data.session_id) !== root.dataset.session || data.status !== "open") { refresh(); }
  });
  events.addEventListener("resync", refresh);
  // "live": the server has subscribed this page, so every later change reaches it. "busy": the server has as
  // many live pages open as it allows; the browser asks again by itself, and the page works without updates.
  var paused = "Live readings are paused because many station pages are open. They come back by themselves; " +
    "you can still type values and send to chart.";
  var missed = false;  // the stream broke or was refused: changes may have gone by unseen
  events.addEventListener("error", function () { missed = true; });
  events.addEventListener("live", function () {
    root.dataset.live = "connected";
    if (notice.textContent === paused) { notice.hidden = true; notice.textContent = ""; }
    if (missed) { missed = false; refresh(); }
  });
  events.addEventListener("busy", function () {
    root.dataset.live = "busy";
    notice.textContent = paused;
    notice.hidden = false;
  });
}());
