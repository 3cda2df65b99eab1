/* Kiosk behaviour that needs a script: the idle timeout (warning, countdown, wipe), noticing a reset by
   staff, the self-resetting last screen, the signature pad, and the lobby's live updates. Every page
   works without it except these. No inline script anywhere: the CSP forbids it. */
(function () {
  "use strict";
  var body = document.body;
  var data = body.dataset;
  var tokenMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = tokenMeta ? tokenMeta.content : "";

  function post(url, fields) {
    return fetch(url, {
      method: "POST", credentials: "same-origin", redirect: "manual",
      headers: {"X-CSRFToken": csrf, "Content-Type": "application/x-www-form-urlencoded"},
      body: new URLSearchParams(fields || {})
    });
  }

  function home() { window.location.replace(data.home); }

  function wipe(reason) {
    post(data.reset, {reason: reason}).then(home, home);
  }

  // A page restored from the back-forward cache is shown again from the server, which knows the session is gone.
  window.addEventListener("pageshow", function (event) { if (event.persisted) { window.location.reload(); } });

  function idleTimeout() {
    var dialog = document.getElementById("timeout");
    var more = document.getElementById("timeout-more");
    var secondsEl = document.getElementById("timeout-seconds");
    var live = document.getElementById("timeout-live");
    var idleMs = Number(data.idle) * 1000;
    var warnSeconds = Number(data.warning);
    var timer = null, ticker = null, remaining = warnSeconds, lastPing = Date.now();

    function announce() { live.textContent = live.dataset.template.replace("{n}", String(remaining)); }

    function arm() {
      window.clearTimeout(timer);
      timer = window.setTimeout(warn, idleMs);
      if (Date.now() - lastPing > 30000) {   // activity without page loads still keeps the server session
        lastPing = Date.now();
        post(data.extend).then(function (r) { return r.json(); }).then(function (j) { if (!j.active) { home(); } },
                                                                        function () {});
      }
    }

    function warn() {
      remaining = warnSeconds;
      secondsEl.textContent = String(remaining);
      dialog.showModal();
      more.focus();
      announce();
      ticker = window.setInterval(function () {
        remaining -= 1;
        secondsEl.textContent = String(Math.max(remaining, 0));
        if (remaining === 20 || remaining === 10 || remaining === 5) { announce(); }
        if (remaining <= 0) { window.clearInterval(ticker); wipe("timeout"); }
      }, 1000);
    }

    more.addEventListener("click", function () {
      window.clearInterval(ticker);
      dialog.close();
      lastPing = 0;
      arm();
    });
    dialog.addEventListener("cancel", function (event) { event.preventDefault(); more.click(); });
    ["pointerdown", "keydown", "input", "touchstart", "wheel"].forEach(function (name) {
      document.addEventListener(name, function () { if (!dialog.open) { arm(); } }, {passive: true});
    });
    lastPing = Date.now();
    arm();
    // A reset by staff (or by the server's own clock) sends this screen home within seconds.
    window.setInterval(function () {
      fetch(data.alive, {credentials: "same-origin"}).then(function (r) { return r.json(); })
        .then(function (j) { if (!j.active) { home(); } }, function () {});
    }, 15000);
  }

  function finishAfter(seconds) {
    window.setTimeout(function () { wipe("finished"); }, seconds * 1000);
  }

  function signaturePad(box) {
    var canvas = box.querySelector("canvas");
    var field = box.querySelector('input[name="drawing"]');
    var ctx = canvas.getContext("2d");
    var path = [], drawing = false;
    box.hidden = false;
    ctx.lineWidth = 4; ctx.lineCap = "round"; ctx.strokeStyle = "#0b0c0c";
    function point(event) {
      var r = canvas.getBoundingClientRect();
      return [Math.round((event.clientX - r.left) * canvas.width / r.width),
              Math.round((event.clientY - r.top) * canvas.height / r.height)];
    }
    canvas.addEventListener("pointerdown", function (event) {
      drawing = true; canvas.setPointerCapture(event.pointerId);
      var p = point(event); ctx.beginPath(); ctx.moveTo(p[0], p[1]); path.push("M" + p[0] + " " + p[1]);
    });
    canvas.addEventListener("pointermove", function (event) {
      if (!drawing) { return; }
      var p = point(event); ctx.lineTo(p[0], p[1]); ctx.stroke(); path.push("L" + p[0] + " " + p[1]);
      field.value = path.join(" ");
    });
    canvas.addEventListener("pointerup", function () { drawing = false; });
    box.querySelector("[data-clear]").addEventListener("click", function () {
      ctx.clearRect(0, 0, canvas.width, canvas.height); path = []; field.value = "";
    });
  }

  function lobby(box) {
    var source = new EventSource(box.dataset.lobby);
    source.addEventListener("state", function (event) {
      var state = JSON.parse(event.data);
      var list = document.getElementById("called");
      list.replaceChildren();
      state.called.forEach(function (c) {
        var li = document.createElement("li");
        var n = document.createElement("strong"); n.textContent = String(c.ticket);
        var room = document.createElement("span"); room.textContent = c.room;
        li.append(n, " ", room); list.append(li);
      });
      if (!state.called.length) { var none = document.createElement("li"); none.textContent = "—"; list.append(none); }
      document.getElementById("waiting").textContent = String(state.waiting);
      document.getElementById("wait").textContent = String(state.wait);
    });
  }

  if (data.session === "1") { idleTimeout(); }
  if (data.step === "welcome") { window.setTimeout(function () { window.location.reload(); }, 30 * 60 * 1000); }
  var done = document.querySelector("[data-done]");
  if (done) { finishAfter(Number(done.dataset.done)); }
  var pad = document.querySelector("[data-signature]");
  if (pad) { signaturePad(pad); }
  var board = document.querySelector("[data-lobby]");
  if (board) { lobby(board); }
  var summary = document.querySelector(".error-summary");
  if (summary) { summary.focus(); }
}());
