// The offline demo's stand-in player (demo-player.html): title and badge from the query
// string (?title=…&replay=1), and a clock in China time (live) or the replay's position.
(function () {
  "use strict";
  var params = new URLSearchParams(window.location.search);
  var title = params.get("title");
  if (title) {
    document.getElementById("title").textContent = title;
    document.title = title + " · 演示";
  }
  if (params.get("replay") === "1") {
    document.body.classList.add("replay");
    document.getElementById("badge-text").textContent = "回放 · REPLAY";
    document.getElementById("note").textContent = "";
    document.getElementById("note").append(
      "演示环境没有真实回放视频：正式活动在此处播放会后回放。",
      document.createElement("br"),
      "Demo stand-in: a real summit plays the session's replay here.");
  }
  var clock = document.getElementById("clock");
  var replay = params.get("replay") === "1";
  var started = Date.now();
  var format = new Intl.DateTimeFormat("zh-CN", {
    timeZone: "Asia/Shanghai", hour: "2-digit", minute: "2-digit", second: "2-digit",
    hour12: false,
  });
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function tick() {
    if (replay) {  // the replay's position: time since the page opened
      var s = Math.floor((Date.now() - started) / 1000);
      clock.textContent = pad(Math.floor(s / 3600)) + ":" + pad(Math.floor(s / 60) % 60) +
        ":" + pad(s % 60);
    } else {
      clock.textContent = format.format(new Date()) + " 北京时间";
    }
  }
  tick();
  window.setInterval(tick, 1000);
})();
