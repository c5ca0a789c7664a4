// The giving-day dashboard, live: listens to the campaign's Server-Sent Events and updates the
// figures in place. Without this script (or without EventSource) the page is complete as
// served and reloads itself every 30 seconds (a <noscript> refresh).
(function () {
  "use strict";
  var root = document.querySelector(".campaign-live");
  if (!root) return;
  var lang = root.getAttribute("data-locale") === "en" ? "en" : "zh-CN";
  var isEn = lang === "en";
  var grouping = new Intl.NumberFormat(lang, { maximumFractionDigits: 0 });
  var cents = new Intl.NumberFormat(lang, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  var clock = new Intl.DateTimeFormat(lang, {
    timeZone: "Asia/Shanghai", month: "2-digit", day: "2-digit", hour: "2-digit",
    minute: "2-digit", hourCycle: "h23"
  });

  // The server's format_fen(..., cents=False): whole yuan without decimals.
  function money(fen) {
    var sign = fen < 0 ? "-" : "";
    fen = Math.abs(fen);
    var text = fen % 100 === 0 ? grouping.format(fen / 100) : cents.format(fen / 100);
    return sign + "\u00a5" + text;
  }
  function fill(template, name, value) {
    return template.split("%(" + name + ")s").join(value);
  }
  function setText(el, text) {
    if (el && el.textContent !== text) el.textContent = text;
  }
  function live(name) { return root.querySelector('[data-live="' + name + '"]'); }

  // --- leaderboard tabs (without the script all four lists show, one after another) ---------
  var boards = root.querySelector(".boards");
  if (boards) {
    var tabs = boards.querySelectorAll('[role="tab"]');
    var select = function (name) {
      Array.prototype.forEach.call(tabs, function (tab) {
        var on = tab.getAttribute("data-board") === name;
        tab.setAttribute("aria-selected", on ? "true" : "false");
        tab.classList.toggle("active", on);
        var panel = document.getElementById("board-" + tab.getAttribute("data-board"));
        if (panel) panel.hidden = !on;
      });
    };
    Array.prototype.forEach.call(tabs, function (tab) {
      tab.addEventListener("click", function () { select(tab.getAttribute("data-board")); });
    });
    boards.querySelector(".board-tabs").hidden = false;
    boards.classList.add("tabbed");
    if (tabs.length) select(tabs[0].getAttribute("data-board"));
  }

  // --- applying a snapshot ---------------------------------------------------------------------
  function applyTotals(snap) {
    setText(live("raised"), money(snap.totals.raised_fen));
    setText(live("matched"), money(snap.totals.matched_fen));
    setText(live("gifts"), String(snap.totals.gifts));
    setText(live("rate"), String(snap.gifts_last_minute));
  }

  function applyPools(snap) {
    snap.pools.forEach(function (p) {
      var el = root.querySelector('[data-pool="' + p.pool_id + '"]');
      var bar = el && el.querySelector(".progress");
      if (!bar) return;  // a pool added since the page loaded, or a quadratic round
      bar.setAttribute("aria-valuenow", String(p.percent_left));
      bar.firstElementChild.style.width = p.percent_left + "%";
      setText(el.querySelector('[data-f="remaining"]'), money(p.remaining_fen));
      setText(el.querySelector('[data-f="pct"]'), p.percent_left + "%");
      var out = el.querySelector('[data-f="exhausted"]');
      out.hidden = !p.exhausted_at;
      if (p.exhausted_at) {
        var time = out.querySelector("time");
        time.setAttribute("datetime", p.exhausted_at);
        setText(time, clock.format(new Date(p.exhausted_at)));
      }
    });
  }

  function applyChart(snap) {
    var svg = root.querySelector("svg.chart");
    if (!svg) return;
    var rects = svg.querySelectorAll("rect");
    var points = snap.per_minute;
    var top = 0;
    points.forEach(function (m) { if (m.gifts > top) top = m.gifts; });
    var peak = Math.max(top, 1);
    points.forEach(function (m, i) {
      var r = rects[i];
      if (!r) return;
      var h = Math.round(m.gifts * 1000 / peak) / 10;
      r.setAttribute("y", String(100 - h));
      r.setAttribute("height", String(h));
      r.setAttribute("data-minute", m.minute);
      setText(r.querySelector("title"), m.label + ": " + m.gifts);
    });
    if (points.length) {
      setText(svg.querySelector('[data-f="first"]'), points[0].label);
      setText(svg.querySelector('[data-f="last"]'), points[points.length - 1].label);
    }
    var peakLabel = svg.querySelector('[data-f="peak"]');
    if (peakLabel) {
      setText(peakLabel, fill(peakLabel.getAttribute("data-template"), "n", String(top)));
    }
  }

  function row(board, e) {
    var li = document.createElement("li");
    var rank = document.createElement("span");
    rank.className = "rank";
    rank.textContent = String(e.rank);
    var who = document.createElement("span");
    who.className = "who";
    var name = isEn ? e.name_en : e.name;
    if (e.url) {
      var a = document.createElement("a");
      a.href = e.url;
      a.textContent = name;
      who.appendChild(a);
    } else {
      who.appendChild(document.createTextNode(name));
    }
    var sub = document.createElement("span");
    sub.className = "muted small";
    sub.textContent = board === "sponsors"
      ? fill(root.getAttribute("data-committed-label"), "amount", money(e.raised_fen))
      : fill(root.getAttribute("data-gifts-label"), "n", String(e.gifts));
    who.appendChild(document.createTextNode(" "));
    who.appendChild(sub);
    var amt = document.createElement("b");
    amt.className = "amt";
    amt.textContent = money(board === "sponsors" ? e.matched_fen : e.raised_fen);
    li.appendChild(rank);
    li.appendChild(who);
    li.appendChild(amt);
    return li;
  }

  function applyBoards(snap) {
    Object.keys(snap.boards).forEach(function (board) {
      var list = root.querySelector('ol[data-board="' + board + '"]');
      var entries = snap.boards[board];
      if (!list || !entries.length) return;  // keep the "no gifts yet" line
      var key = JSON.stringify(entries);
      if (list.getAttribute("data-key") === key) return;
      list.setAttribute("data-key", key);
      var fresh = document.createDocumentFragment();
      entries.forEach(function (e) { fresh.appendChild(row(board, e)); });
      list.replaceChildren(fresh);
    });
  }

  function apply(snap) {
    applyTotals(snap);
    applyPools(snap);
    applyChart(snap);
    applyBoards(snap);
    root.setAttribute("data-updated", String(Date.now()));
  }

  // --- the stream ------------------------------------------------------------------------------
  if (!("EventSource" in window)) {
    window.setTimeout(function () { window.location.reload(); }, 30000);
    return;
  }
  function state(name) {
    root.setAttribute("data-live-state", name);
    var el = live("state");
    if (el) setText(el, el.getAttribute("data-label-" + name) || "");
  }
  var source = new EventSource(root.getAttribute("data-live-url"));
  source.addEventListener("snapshot", function (event) {
    var snap;
    try { snap = JSON.parse(event.data); } catch (err) { return; }
    apply(snap);
    state("live");
  });
  source.addEventListener("error", function () {
    // EventSource reconnects by itself; say so until it is back.
    state("reconnecting");
  });
  window.addEventListener("pagehide", function () { source.close(); });
})();
