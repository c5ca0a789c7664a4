// The summit's stage (helper: events): plays a session's HLS stream or replay, and counts down
// to a session that has not started.
//
// An HLS playlist plays natively where the browser can (Safari, iOS, some Android browsers:
// video.canPlayType("application/vnd.apple.mpegurl")); elsewhere with hls.js (vendored,
// /static/vendor/hls.js/hls.min.js) over Media Source Extensions. The video element says which
// in data-player ("native", "hls.js" or "unsupported"); window.summitStage keeps the hls.js
// instance (for the live panel and the tests). A provider's player page is a plain iframe and
// needs no script. Shanju never transcodes: the stream comes from the organizers' provider.
(function () {
  "use strict";

  var stage = (window.summitStage = window.summitStage || { hls: null, video: null });

  function attach(video) {
    var src = video.getAttribute("data-hls-src");
    if (!src) return;
    stage.video = video;
    if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = src;
      video.setAttribute("data-player", "native");
      return;
    }
    var Hls = window.Hls;
    if (Hls && Hls.isSupported()) {
      var hls = new Hls({ lowLatencyMode: video.getAttribute("data-replay") !== "true" });
      hls.on(Hls.Events.ERROR, function (_event, data) {
        if (!data || !data.fatal) return;
        if (data.type === Hls.ErrorTypes.NETWORK_ERROR) {
          // The stream may not have started yet, or the network blinked: retry a little later.
          window.setTimeout(function () { hls.startLoad(); }, 3000);
        } else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
          hls.recoverMediaError();
        } else {
          showError(video);
        }
      });
      hls.loadSource(src);
      hls.attachMedia(video);
      stage.hls = hls;
      video.setAttribute("data-player", "hls.js");
      return;
    }
    video.setAttribute("data-player", "unsupported");
    showError(video);
  }

  function showError(video) {
    var note = video.parentNode && video.parentNode.querySelector("[data-player-error]");
    if (note) note.hidden = false;
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function countdown(el) {
    var at = Date.parse(el.getAttribute("data-countdown"));
    if (isNaN(at)) return;
    var label = el.getAttribute("data-label") || "";
    var soon = el.getAttribute("data-soon") || "";
    var unit = el.getAttribute("data-days") || "d";
    function tick() {
      var left = Math.floor((at - Date.now()) / 1000);
      if (left <= 0) {
        el.textContent = soon;
        window.clearInterval(timer);
        watchStage();
        return;
      }
      var days = Math.floor(left / 86400);
      var h = Math.floor((left % 86400) / 3600);
      var m = Math.floor((left % 3600) / 60);
      var s = left % 60;
      el.textContent = label + " " + (days > 0 ? days + " " + unit + " " : "") + pad(h) + ":" + pad(m) + ":" + pad(s);
    }
    var timer = window.setInterval(tick, 1000);
    tick();
  }

  // While the stage waits (before the start, or for a stream or a replay), check the
  // session now and then and reload when its status or addresses change. Only pages that
  // wait poll, every 30–45 s (spread so that thousands of pages do not ask at once).
  var polling = false;
  function pause(first) {
    var fixed = window.summitStagePollMs; // a test's shorter pause
    if (typeof fixed === "number") return fixed;
    return (first ? 0 : 30000) + Math.random() * 15000;
  }
  function watchStage() {
    var page = document.querySelector("[data-session-api]");
    if (!page || polling) return;
    var api = page.getAttribute("data-session-api");
    var known = page.getAttribute("data-stage-signature");
    polling = true;
    function check() {
      fetch(api, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (s) {
          if (!s) return;
          var now = [s.status, s.stream_url || "", s.player_url || "", s.replay_url || ""].join("|");
          if (now !== known) window.location.reload();
        })
        .catch(function () { /* offline for a moment: try again later */ })
        .then(function () { window.setTimeout(check, pause(false)); });
    }
    window.setTimeout(check, pause(true));
  }

  function init() {
    var videos = document.querySelectorAll("video[data-hls-src]");
    for (var i = 0; i < videos.length; i++) attach(videos[i]);
    var counters = document.querySelectorAll("[data-countdown]");
    for (var j = 0; j < counters.length; j++) countdown(counters[j]);
    var page = document.querySelector("[data-session-api]");
    if (page && page.getAttribute("data-stage-waiting") === "true" &&
        page.getAttribute("data-phase") !== "before") {
      watchStage();
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
