// The summit's live rooms in the browser: chat, questions, polls, the attendee count and a
// roundtable's breakout rooms, over one WebSocket (docs/summit/live-protocol.md). Moderators
// get the console's extra lists and buttons. All text people typed goes in with textContent;
// the panel's words come translated from the page (the JSON block .live-strings).
// Live tokens last minutes: the server sends a renewed one over the socket while the browser
// session lasts ({"t":"token"}); a reconnect with an expired one first asks the page's token
// endpoint for a new one. Signed out (close 4011): a message asking to sign in again; the
// role changed (4012): the page reloads to show what the person is now.
// Every wait has a bound: a socket that does not open within 10 s, or a join that gets no
// welcome within 15 s (a server stuck opening the room), is given up and tried again with the
// backoff, showing "reconnecting…" (data-open-timeout-ms / data-join-timeout-ms shorten them).
// After a reconnect the welcome's state replaces what the page showed; a batch older than the
// welcome (by the room's sequence number, seq) is stale and ignored.
(function () {
  "use strict";
  var root = document.querySelector(".summit-live[data-token]");
  if (!root || !window.WebSocket || !window.JSON) return;

  var S = JSON.parse(root.querySelector(".live-strings").textContent);
  var lang = root.getAttribute("data-locale") === "en" ? "en" : "zh-CN";
  var numbers = new Intl.NumberFormat(lang, { maximumFractionDigits: 0 });
  var clock = new Intl.DateTimeFormat(lang, {
    timeZone: "Asia/Shanghai", hour: "2-digit", minute: "2-digit", hourCycle: "h23"
  });
  var isMod = root.getAttribute("data-role") === "moderator";
  var consoleMode = root.getAttribute("data-console") === "true";
  var roomsBase = root.getAttribute("data-rooms-base") || "";
  var me = Number(root.getAttribute("data-me"));
  var role = root.getAttribute("data-role");
  var MAX_CHAT = 200;
  var HEARTBEAT_MS = 20000;
  var FATAL = { not_registered: 1, room_not_found: 1, banned: 1 };
  var CLOSE_SESSION_ENDED = 4011;
  var CLOSE_ROLE_CHANGED = 4012;
  var RENEW_MARGIN_MS = 15000;  // fetch a new token before (re)connecting this close to expiry
  var OPEN_TIMEOUT_MS = positiveMs("data-open-timeout-ms", 10000);  // the socket opens
  var JOIN_TIMEOUT_MS = positiveMs("data-join-timeout-ms", 15000);  // join -> welcome; token fetch
  var tokenUrl = root.getAttribute("data-token-url");
  var signinUrl = root.getAttribute("data-signin-url");
  var token = root.getAttribute("data-token");
  var tokenDeadline = 0;  // Date.now() when the token runs out (relative: the server's clock
  var tokenFresh = false;  // may differ); fresh: fetched for the current attempt
  setToken(token, Number(root.getAttribute("data-token-ttl")) || 300);

  // --- small helpers ---------------------------------------------------------------------------
  function positiveMs(name, fallback) {
    var n = Number(root.getAttribute(name));
    return n > 0 ? n : fallback;
  }
  function fill(template, params) {
    Object.keys(params || {}).forEach(function (k) {
      template = template.split("%(" + k + ")s").join(String(params[k]));
    });
    return template;
  }
  function $(sel) { return root.querySelector(sel); }
  function live(name) { return $('[data-live="' + name + '"]'); }
  function make(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function button(label, cls, onClick) {
    var b = make("button", cls || "btn small secondary", label);
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }
  function setText(node, text) { if (node && node.textContent !== text) node.textContent = text; }
  function showEmpty(name, empty) {
    var p = $('[data-empty="' + name + '"]');
    if (p) p.hidden = !empty;
  }
  function time(iso) {
    var d = new Date(iso);
    return isNaN(d.getTime()) ? "" : clock.format(d);
  }

  // --- tabs --------------------------------------------------------------------------------------
  var tabs = root.querySelectorAll('[role="tab"]');
  function selectTab(name) {
    Array.prototype.forEach.call(tabs, function (tab) {
      var on = tab.getAttribute("data-tab") === name;
      tab.setAttribute("aria-selected", on ? "true" : "false");
      var pane = $('[data-pane="' + tab.getAttribute("data-tab") + '"]');
      if (pane) pane.hidden = !on;
    });
  }
  Array.prototype.forEach.call(tabs, function (tab) {
    tab.addEventListener("click", function () { selectTab(tab.getAttribute("data-tab")); });
  });

  // --- errors shown beside the form that caused them --------------------------------------------
  var errorTimers = {};
  function errorText(frame) {
    var code = frame.code || "other";
    var template = S.err[code];
    if (!template) return fill(S.err.other, { code: code });
    return fill(template, { n: frame.retry_after || 0 });
  }
  function showError(where, frame) {
    var box = $('[data-error="' + where + '"]');
    if (!box) return;
    clearInterval(errorTimers[where]);
    box.hidden = false;
    box.setAttribute("data-code", frame.code || "");
    box.textContent = errorText(frame);
    var left = Number(frame.retry_after) || 0;
    if (left > 0) {
      // Count the seconds down, then let the person try again.
      errorTimers[where] = setInterval(function () {
        left -= 1;
        if (left <= 0) { clearInterval(errorTimers[where]); box.hidden = true; return; }
        box.textContent = errorText({ code: frame.code, retry_after: left });
      }, 1000);
    } else {
      errorTimers[where] = setTimeout(function () { box.hidden = true; }, 8000);
    }
  }
  function showInfo(where, text) {
    var box = $('[data-error="' + where + '"]');
    if (!box) return;
    clearInterval(errorTimers[where]);
    box.hidden = false;
    box.setAttribute("data-code", "info");
    box.textContent = text;
    errorTimers[where] = setTimeout(function () { box.hidden = true; }, 6000);
  }
  function hideError(where) {
    var box = $('[data-error="' + where + '"]');
    if (box) { clearInterval(errorTimers[where]); box.hidden = true; }
  }

  // --- the connection ----------------------------------------------------------------------------
  var ws = null;
  var joined = false;
  var stopped = false;
  var attempt = 0;
  var heartbeat = null;
  var refs = 0;
  var waiting = {};  // ref -> {ack, error}
  var joinError = null;
  var retryTimer = null;
  var waitTimer = null;  // the bound on the socket opening, then on the welcome
  var seq = null;  // the room's sequence number as last applied (welcome or batch)
  var welcomeSeq = null;  // this connection's welcome's: batches older than it are stale

  function setStatus(text) {
    var node = live("status");
    setText(node, text);
    node.hidden = !text;
    root.classList.toggle("offline", !!text);
    // Lost the connection: the forms say they cannot send (what was typed stays in them).
    Array.prototype.forEach.call(root.querySelectorAll('[data-live="offline"]'), function (p) {
      p.hidden = text !== S.reconnecting;
    });
  }

  function fatal(code) {
    stopped = true;
    clearTimeout(retryTimer);
    retryTimer = null;
    var box = live("fatal");
    box.textContent = errorText({ code: code });
    if (code === "session_ended" && signinUrl) {
      var link = make("a", "", S.sign_in);
      link.href = signinUrl;
      box.appendChild(document.createTextNode(" "));
      box.appendChild(link);
    }
    box.hidden = false;
    box.setAttribute("data-code", code);
    setStatus("");
    root.classList.add("closed");
  }

  // --- the live token ----------------------------------------------------------------------------
  function setToken(value, ttlSeconds) {
    token = value;
    tokenDeadline = Date.now() + ttlSeconds * 1000;
  }

  // The person is something else now (no longer a moderator): the page knows what to show.
  function roleChanged() {
    var key = "shanju-live-reloaded";
    try {
      var last = Number(window.sessionStorage.getItem(key)) || 0;
      if (Date.now() - last > 60000) {
        window.sessionStorage.setItem(key, String(Date.now()));
        stopped = true;
        window.location.reload();
        return;
      }
    } catch (e) { /* no storage: say so instead of reloading */ }
    fatal("role_changed");
  }

  function fetchToken(then) {
    setStatus(attempt ? S.reconnecting : S.connecting);
    // Bounded like a join: a token endpoint that does not answer is given up and retried.
    var controller = window.AbortController ? new AbortController() : null;
    var timer = setTimeout(function () { if (controller) controller.abort(); }, JOIN_TIMEOUT_MS);
    fetch(tokenUrl, { credentials: "same-origin", cache: "no-store",
                      headers: { Accept: "application/json" },
                      signal: controller ? controller.signal : undefined })
      .then(function (response) {
        return response.json().then(function (body) { return { status: response.status, body: body }; });
      })
      .then(function (answer) {
        clearTimeout(timer);
        if (stopped) return;
        var body = answer.body || {};
        if (answer.status === 200 && body.token) {
          if (body.role !== role) { roleChanged(); return; }
          setToken(body.token, Number(body.ttl) || 300);
          tokenFresh = true;
          then();
        } else if (answer.status === 401) {
          fatal("session_ended");
        } else if (answer.status === 403 || answer.status === 404) {
          fatal(body.error && body.error.code === "not_registered" ? "not_registered" : "room_not_found");
        } else {
          retry();
        }
      })
      .catch(function () { clearTimeout(timer); retry(); });
  }

  function connect() {
    if (stopped) return;
    if (Date.now() > tokenDeadline - RENEW_MARGIN_MS) { fetchToken(openSocket); return; }
    openSocket();
  }

  function openSocket() {
    if (stopped) return;
    joinError = null;
    welcomeSeq = null;
    setStatus(attempt ? S.reconnecting : S.connecting);
    var scheme = location.protocol === "https:" ? "wss:" : "ws:";
    var sock;
    try {
      sock = new WebSocket(scheme + "//" + location.host + root.getAttribute("data-ws-path"));
    } catch (e) {
      retry();
      return;
    }
    ws = sock;
    bound(sock, OPEN_TIMEOUT_MS);
    // Each handler answers only for the current socket: one given up may still report.
    sock.onopen = function () {
      if (sock !== ws) return;
      bound(sock, JOIN_TIMEOUT_MS);
      sock.send(JSON.stringify({ t: "join", token: token, room: root.getAttribute("data-room") }));
    };
    sock.onmessage = function (event) {
      if (sock !== ws) return;
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame && typeof frame === "object") receive(frame);
    };
    sock.onclose = function (event) {
      if (sock === ws) lost(event.code);
    };
  }

  // Give up on `sock` if it has not opened, or not been welcomed, within `ms`: the server may
  // hold a socket open without answering (a room it cannot open), and no close would come.
  function bound(sock, ms) {
    clearTimeout(waitTimer);
    waitTimer = setTimeout(function () {
      waitTimer = null;
      if (sock !== ws || joined) return;
      sock.onopen = sock.onmessage = sock.onclose = null;
      try { sock.close(); } catch (e) { /* closing a socket that failed: nothing to do */ }
      lost(0);
    }, ms);
  }

  // The connection ended (closed with `code`, or 0: given up by this page).
  function lost(code) {
    ws = null;
    joined = false;
    clearTimeout(waitTimer);
    waitTimer = null;
    clearInterval(heartbeat);
    Object.keys(waiting).forEach(function (ref) {
      var h = waiting[ref];
      delete waiting[ref];
      if (h.error) h.error({ code: "offline" });
    });
    if (joinError && FATAL[joinError]) { fatal(joinError); return; }
    if (code === 4003) { fatal("banned"); return; }
    if (code === 4004) { fatal("room_not_found"); return; }
    if (code === CLOSE_SESSION_ENDED) { fatal("session_ended"); return; }
    if (code === CLOSE_ROLE_CHANGED) { tokenDeadline = 0; }  // a new token says what
    if (code === 4001) {
      // Expired or refused token: a new one from the page's endpoint, unless that one was
      // just fetched and refused too.
      if (joinError === "bad_token" && tokenFresh) { fatal("bad_token"); return; }
      tokenDeadline = 0;
    }
    if (code === 4029) { attempt = Math.max(attempt, 5); }  // full: try again later
    // Anything else (server_busy with 1011, 1001 going away, a socket given up): try again.
    retry();
  }

  function seqOf(holder) {
    var n = holder ? holder.seq : null;
    return typeof n === "number" && isFinite(n) ? n : null;
  }

  function retry() {
    if (stopped) return;
    clearTimeout(retryTimer);
    attempt += 1;
    setStatus(S.reconnecting);
    // Exponential backoff with jitter, so that thousands of clients do not come back at once.
    var delay = Math.min(30000, 1000 * Math.pow(2, attempt - 1));
    delay = delay / 2 + Math.random() * delay / 2;
    retryTimer = setTimeout(function () { retryTimer = null; connect(); }, delay);
  }

  // Back online (or back to the tab on a phone): try at once rather than after the backoff.
  function retryNow() {
    if (retryTimer === null || stopped) return;
    clearTimeout(retryTimer);
    retryTimer = null;
    connect();
  }
  window.addEventListener("online", retryNow);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") retryNow();
  });

  function send(frame, handlers) {
    if (!joined || !ws) {
      if (handlers && handlers.error) handlers.error({ code: "offline" });
      return false;
    }
    refs += 1;
    frame.ref = "c" + refs;
    waiting[frame.ref] = handlers || {};
    ws.send(JSON.stringify(frame));
    return true;
  }

  function mod(action, fields, where, done) {
    var frame = { t: "mod", action: action };
    Object.keys(fields || {}).forEach(function (k) { frame[k] = fields[k]; });
    return send(frame, {
      ack: function (ack) { if (done) done(ack); },
      error: function (err) { showError(where, err); }
    });
  }

  function receive(frame) {
    if (frame.t === "welcome") {
      clearTimeout(waitTimer);
      waitTimer = null;
      joined = true;
      attempt = 0;
      tokenFresh = false;
      welcomeSeq = seqOf(frame.state);
      setSeq(welcomeSeq);
      setStatus("");
      ["chat", "ask"].forEach(function (where) {
        var box = $('[data-error="' + where + '"]');
        if (box && box.getAttribute("data-code") === "offline") hideError(where);
      });
      applyWelcome(frame);
      clearInterval(heartbeat);
      heartbeat = setInterval(function () {
        if (joined && ws) ws.send('{"t":"hb"}');
      }, HEARTBEAT_MS);
    } else if (frame.t === "batch") {
      if (!joined) return;  // the welcome's state will hold it
      var n = seqOf(frame);
      // The welcome holds every change up to its seq: an older batch (queued before this
      // connection's join) would bring back what has changed since, e.g. a deleted message.
      if (n !== null && welcomeSeq !== null && n < welcomeSeq) return;
      if (n !== null) setSeq(Math.max(n, seq === null ? n : seq));
      (frame.events || []).forEach(applyEvent);
    } else if (frame.t === "token") {
      if (typeof frame.token === "string") setToken(frame.token, Number(frame.ttl) || 300);
    } else if (frame.t === "ack" || frame.t === "error") {
      var handlers = frame.ref ? waiting[frame.ref] : null;
      if (frame.ref) delete waiting[frame.ref];
      if (!joined && frame.t === "error") { joinError = frame.code; return; }
      if (handlers) {
        if (frame.t === "ack" && handlers.ack) handlers.ack(frame);
        if (frame.t === "error" && handlers.error) handlers.error(frame);
      }
    }
  }

  // The sequence number the page has applied up to, also on the root (data-seq) for tests.
  function setSeq(n) {
    seq = n;
    if (n === null) root.removeAttribute("data-seq");
    else root.setAttribute("data-seq", String(n));
  }

  // --- what the room holds -----------------------------------------------------------------------
  var questions = {};  // id -> question (approved, answering, answered)
  var polls = {};  // id -> poll (open, closed; drafts in the console)
  var mine = {};  // my questions waiting for review: id -> {id, body}
  var myUpvotes = {};  // question id -> true
  var myVotes = {};  // poll id -> option id (-1: voted, option unknown)
  var held = {};  // moderators: held chat messages
  var pending = {};  // moderators: questions waiting for review
  var settings = { paused: false, slow: 0, premoderated: false };

  function applyWelcome(frame) {
    var st = frame.state || {};
    if (frame.you && frame.you.user) me = Number(frame.you.user);
    applySettings(st.settings || settings);
    setCount(st.count || 0);
    var chat = live("chat");
    chat.replaceChildren();
    (st.chat || []).forEach(addChat);
    showEmpty("chat", !chat.children.length);
    scrollChat(true);
    questions = {};
    pending = {};
    (st.pending || []).forEach(function (q) { pending[q.id] = q; });
    (st.questions || []).forEach(function (q) {
      if (q.voted) myUpvotes[q.id] = true;
      if (q.status === "pending") {
        if (isMod) pending[q.id] = q;
        return;
      }
      delete mine[q.id];
      if (q.status !== "rejected") questions[q.id] = q;
    });
    renderQuestions();
    renderMine();
    var drafts = {};
    Object.keys(polls).forEach(function (id) {
      if (polls[id].status === "draft") drafts[id] = polls[id];
    });
    polls = drafts;
    (st.polls || []).forEach(function (p) {
      if (p.status === "draft" && !consoleMode) return;
      if (p.voted !== null && p.voted !== undefined && p.voted !== false) myVotes[p.id] = p.voted;
      polls[p.id] = p;
    });
    renderPolls();
    renderRooms(st.rooms || []);
    held = {};
    (st.held || []).forEach(function (m) { held[m.id] = m; });
    renderHeld();
    renderPending();
  }

  function applyEvent(e) {
    switch (e.k) {
      case "chat":
        delete held[e.m.id];
        addChat(e.m);
        showEmpty("chat", false);
        scrollChat(false);
        renderHeld();
        break;
      case "chat_removed":
        removeChat(e.id);
        if (held[e.id]) { delete held[e.id]; renderHeld(); }
        break;
      case "question": upsertQuestion(e.q); break;
      case "poll": upsertPoll(e.p); break;
      case "settings": applySettings(e); break;
      case "count": setCount(e.n); break;
      case "rooms": renderRooms(e.rooms || []); break;
      // A moderator's batch may carry a message's or question's older, moderators-only
      // state after its public one: what is already public stays public.
      case "held":
        if (!live("chat").querySelector('[data-chat="' + e.m.id + '"]')) {
          held[e.m.id] = e.m;
          renderHeld();
        }
        break;
      case "pending": upsertQuestion(e.q); break;
      default: break;  // an event this page does not know: newer server, ignore
    }
  }

  // --- count and settings ------------------------------------------------------------------------
  function setCount(n) {
    setText(live("count"), fill(S.online, { n: numbers.format(Number(n) || 0) }));
  }

  function applySettings(s) {
    settings = { paused: !!s.paused, slow: Number(s.slow) || 0, premoderated: !!s.premoderated };
    var notice = live("chat-notice");
    var text = settings.paused ? S.paused : settings.slow ? fill(S.slow, { n: settings.slow }) : "";
    setText(notice, text);
    notice.hidden = !text;
    var form = $('[data-form="chat"]');
    var closed = settings.paused && !isMod;
    Array.prototype.forEach.call(form.querySelectorAll("input, button"), function (c) {
      c.disabled = closed;
    });
    var state = live("settings-state");
    if (state) {
      setText(state, text || "");
      var toggle = $('[data-mod="toggle-pause"]');
      setText(toggle, settings.paused ? S.resume : S.pause);
      var select = $('[data-form="slow"] select');
      if (select && document.activeElement !== select) select.value = String(settings.slow);
    }
  }

  // --- chat --------------------------------------------------------------------------------------
  function chatItem(m, heldOne) {
    var li = make("li", "live-msg" + (Number(m.user) === me ? " mine" : ""));
    li.setAttribute(heldOne ? "data-held" : "data-chat", String(m.id));
    li.setAttribute("data-user", String(m.user));
    var head = make("div", "live-msg-head");
    head.appendChild(make("span", "live-name", m.name));
    head.appendChild(make("time", "live-time", time(m.at)));
    li.appendChild(head);
    li.appendChild(make("p", "live-body", m.body));
    if (consoleMode) {
      var actions = make("div", "actions live-mod-actions");
      if (heldOne) {
        actions.appendChild(button(S.approve, "btn small", function () {
          mod("chat_approve", { message: m.id }, "chat", function () {
            delete held[m.id]; renderHeld();
          });
        }));
        actions.appendChild(button(S.reject, "btn small secondary", function () {
          mod("chat_reject", { message: m.id }, "chat", function () {
            delete held[m.id]; renderHeld();
          });
        }));
      } else {
        actions.appendChild(button(S["delete"], "btn small secondary", function () {
          mod("chat_delete", { message: m.id }, "chat", function () { removeChat(m.id); });
        }));
      }
      if (Number(m.user) !== me) {
        actions.appendChild(button(S.mute10, "btn small secondary", function () {
          mod("mute", { user: m.user, minutes: 10 }, "chat", function () { showInfo("chat", S.done); });
        }));
        actions.appendChild(button(S.mute60, "btn small secondary", function () {
          mod("mute", { user: m.user, minutes: 60 }, "chat", function () { showInfo("chat", S.done); });
        }));
        actions.appendChild(button(S.ban, "btn small secondary danger", function () {
          if (!window.confirm(S.ban_confirm)) return;
          mod("ban", { user: m.user, reason: S.ban_reason }, "chat", function () { showInfo("chat", S.done); });
        }));
      }
      li.appendChild(actions);
    }
    return li;
  }

  function addChat(m) {
    var list = live("chat");
    if (list.querySelector('[data-chat="' + m.id + '"]')) return;
    list.appendChild(chatItem(m, false));
    while (list.children.length > MAX_CHAT) list.removeChild(list.firstElementChild);
  }

  function removeChat(id) {
    var li = live("chat").querySelector('[data-chat="' + id + '"]');
    if (li) li.remove();
    showEmpty("chat", !live("chat").children.length);
  }

  var stickToBottom = true;
  live("chat").addEventListener("scroll", function () {
    var list = live("chat");
    stickToBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  });
  function scrollChat(force) {
    var list = live("chat");
    if (force || stickToBottom) list.scrollTop = list.scrollHeight;
  }

  function renderHeld() {
    var list = live("held");
    if (!list) return;
    var ids = Object.keys(held).map(Number).sort(function (a, b) { return a - b; });
    list.replaceChildren.apply(list, ids.map(function (id) { return chatItem(held[id], true); }));
    showEmpty("held", !ids.length);
    dot("held-count", ids.length);
  }

  function dot(name, n) {
    var node = live(name);
    if (!node) return;
    node.hidden = !n;
    setText(node, String(n));
  }

  $('[data-form="chat"]').addEventListener("submit", function (event) {
    event.preventDefault();
    var input = this.querySelector('[name="body"]');
    var body = input.value.trim();
    if (!body) return;
    hideError("chat");
    send({ t: "chat", body: body }, {
      ack: function (ack) {
        if (input.value.trim() === body) input.value = "";
        if (ack.status === "held") showInfo("chat", S.held_notice);
      },
      error: function (err) { showError("chat", err); }
    });
  });

  // --- questions ---------------------------------------------------------------------------------
  var STATUS_ORDER = { answering: 0, approved: 1, answered: 2 };
  function questionOrder(a, b) {
    var s = (STATUS_ORDER[a.status] || 0) - (STATUS_ORDER[b.status] || 0);
    if (s) return s;
    if (b.upvotes !== a.upvotes) return b.upvotes - a.upvotes;
    return a.id - b.id;
  }

  function upsertQuestion(q) {
    if (q.status === "pending") {
      if (isMod && !questions[q.id]) { pending[q.id] = q; renderPending(); }
      return;
    }
    if (pending[q.id]) { delete pending[q.id]; renderPending(); }
    if (mine[q.id]) { delete mine[q.id]; renderMine(); }
    if (q.status === "rejected") delete questions[q.id];
    else questions[q.id] = q;
    renderQuestions();
  }

  function questionItem(q) {
    var li = make("li", "live-q");
    li.setAttribute("data-question", String(q.id));
    li.setAttribute("data-status", q.status);
    var main = make("div", "live-q-main");
    if (q.status === "answering") main.appendChild(make("span", "badge warn", S.answering));
    if (q.status === "answered") main.appendChild(make("span", "badge ok", S.answered));
    main.appendChild(make("p", "live-body", q.body));
    main.appendChild(make("span", "live-name small muted", q.name));
    li.appendChild(main);
    var voted = !!myUpvotes[q.id];
    var up = make("button", "live-upvote" + (voted ? " voted" : ""));
    up.type = "button";
    up.setAttribute("aria-pressed", voted ? "true" : "false");
    up.setAttribute("aria-label", (voted ? S.upvoted : S.upvote) + " " + q.upvotes);
    up.appendChild(make("span", "live-arrow", "▲"));
    up.appendChild(make("span", "live-upvotes", numbers.format(q.upvotes || 0)));
    up.disabled = voted || q.status === "answered" || consoleMode;
    up.addEventListener("click", function () {
      up.disabled = true;
      send({ t: "upvote", question: q.id }, {
        ack: function (ack) {
          myUpvotes[q.id] = true;
          if (typeof ack.upvotes === "number" && questions[q.id]) {
            questions[q.id].upvotes = Math.max(questions[q.id].upvotes, ack.upvotes);
          }
          renderQuestions();
        },
        error: function (err) {
          if (err.code === "already_voted") { myUpvotes[q.id] = true; renderQuestions(); return; }
          up.disabled = false;
          showError("qa", err);
        }
      });
    });
    li.appendChild(up);
    if (consoleMode) {
      var actions = make("div", "actions live-mod-actions");
      if (q.status !== "answering") {
        actions.appendChild(button(S.start_answering, "btn small", function () {
          mod("q_answering", { question: q.id }, "qa");
        }));
      }
      if (q.status !== "answered") {
        actions.appendChild(button(S.mark_answered, "btn small secondary", function () {
          mod("q_answered", { question: q.id }, "qa");
        }));
      }
      li.appendChild(actions);
    }
    return li;
  }

  function renderQuestions() {
    var list = live("questions");
    if (!list) return;
    var all = Object.keys(questions).map(function (id) { return questions[id]; });
    all.sort(questionOrder);
    list.replaceChildren.apply(list, all.map(questionItem));
    showEmpty("questions", !all.length);
  }

  function renderMine() {
    var list = live("mine");
    if (!list) return;
    var ids = Object.keys(mine).map(Number).sort(function (a, b) { return a - b; });
    list.replaceChildren.apply(list, ids.map(function (id) {
      var li = make("li", "live-q mine");
      li.setAttribute("data-mine", String(id));
      var main = make("div", "live-q-main");
      main.appendChild(make("span", "badge", S.pending));
      main.appendChild(make("p", "live-body", mine[id].body));
      li.appendChild(main);
      return li;
    }));
  }

  function renderPending() {
    var list = live("pending");
    if (!list) return;
    var ids = Object.keys(pending).map(Number).sort(function (a, b) { return a - b; });
    list.replaceChildren.apply(list, ids.map(function (id) {
      var q = pending[id];
      var li = make("li", "live-q");
      li.setAttribute("data-pending", String(id));
      var main = make("div", "live-q-main");
      main.appendChild(make("p", "live-body", q.body));
      main.appendChild(make("span", "live-name small muted", q.name));
      li.appendChild(main);
      var actions = make("div", "actions live-mod-actions");
      actions.appendChild(button(S.approve, "btn small", function () {
        mod("q_approve", { question: id }, "qa", function () { delete pending[id]; renderPending(); });
      }));
      actions.appendChild(button(S.reject, "btn small secondary", function () {
        mod("q_reject", { question: id }, "qa", function () { delete pending[id]; renderPending(); });
      }));
      li.appendChild(actions);
      return li;
    }));
    showEmpty("pending", !ids.length);
    dot("pending-count", ids.length);
  }

  var askForm = $('[data-form="ask"]');
  if (askForm) {
    askForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var input = askForm.querySelector('[name="body"]');
      var body = input.value.trim();
      if (!body) return;
      hideError("ask");
      send({ t: "ask", body: body }, {
        ack: function (ack) {
          if (input.value.trim() === body) input.value = "";
          if (ack.id !== undefined && !questions[ack.id]) {
            mine[ack.id] = { id: ack.id, body: body };
            renderMine();
          }
        },
        error: function (err) { showError("ask", err); }
      });
    });
  }

  // --- polls -------------------------------------------------------------------------------------
  var POLL_ORDER = { open: 0, draft: 1, closed: 2 };
  var POLL_STAGE = { draft: 0, open: 1, closed: 2 };

  function upsertPoll(p) {
    if (p.status === "draft" && !consoleMode) return;
    var known = polls[p.id];
    // A poll only moves forward (draft, open, closed): an older state arriving late (a
    // moderators' draft event batched after the public "open") is ignored.
    if (known && POLL_STAGE[known.status] > POLL_STAGE[p.status]) return;
    polls[p.id] = p;
    renderPolls();
  }

  function totalOf(p) {
    if (typeof p.total === "number" && p.total > 0) return p.total;
    return (p.options || []).reduce(function (sum, o) { return sum + (o.votes || 0); }, 0);
  }

  function pollItem(p) {
    var box = make("div", "live-poll");
    box.setAttribute("data-poll", String(p.id));
    box.setAttribute("data-status", p.status);
    var head = make("div", "split");
    head.appendChild(make("h4", "live-poll-q", p.question));
    var badge = p.status === "open" ? make("span", "badge ok", S.open)
      : p.status === "draft" ? make("span", "badge", S.draft) : make("span", "badge", S.closed);
    head.appendChild(badge);
    box.appendChild(head);
    var mineVote = myVotes[p.id];
    var canVote = p.status === "open" && mineVote === undefined && !consoleMode;
    if (canVote) {
      var choices = make("div", "live-options");
      (p.options || []).forEach(function (o) {
        var b = button(o.label, "btn secondary block live-option", function () {
          Array.prototype.forEach.call(choices.querySelectorAll("button"), function (x) {
            x.disabled = true;
          });
          send({ t: "vote", poll: p.id, option: o.id }, {
            ack: function () { myVotes[p.id] = o.id; renderPolls(); },
            error: function (err) {
              if (err.code === "already_voted") { myVotes[p.id] = -1; renderPolls(); }
              else {
                Array.prototype.forEach.call(choices.querySelectorAll("button"), function (x) {
                  x.disabled = false;
                });
              }
              showError("polls", err);
            }
          });
        });
        b.setAttribute("data-option", String(o.id));
        choices.appendChild(b);
      });
      box.appendChild(choices);
    } else if (p.status !== "draft") {
      var total = totalOf(p);
      var results = make("div", "live-results");
      (p.options || []).forEach(function (o) {
        var pct = total ? Math.round((o.votes || 0) * 100 / total) : 0;
        var row = make("div", "live-result" + (mineVote === o.id ? " chosen" : ""));
        row.setAttribute("data-option", String(o.id));
        var line = make("div", "split");
        var label = make("span", "live-option-label", o.label);
        if (mineVote === o.id) label.appendChild(make("span", "badge ok", S.your_choice));
        line.appendChild(label);
        var figure = make("b", "live-pct", pct + "%");
        figure.setAttribute("data-votes", String(o.votes || 0));
        line.appendChild(figure);
        row.appendChild(line);
        var bar = make("div", "progress");
        bar.setAttribute("role", "progressbar");
        bar.setAttribute("aria-valuemin", "0");
        bar.setAttribute("aria-valuemax", "100");
        bar.setAttribute("aria-valuenow", String(pct));
        bar.setAttribute("aria-label", o.label);
        var fillBar = make("i");
        fillBar.style.width = pct + "%";
        bar.appendChild(fillBar);
        row.appendChild(bar);
        results.appendChild(row);
      });
      box.appendChild(results);
      var foot = make("p", "small muted live-total", fill(S.votes, { n: numbers.format(total) }));
      if (mineVote !== undefined) foot.textContent += " · " + S.voted;
      box.appendChild(foot);
    } else {
      var draftOptions = make("ol", "small live-draft-options");
      (p.options || []).forEach(function (o) { draftOptions.appendChild(make("li", "", o.label)); });
      box.appendChild(draftOptions);
    }
    if (consoleMode && p.status !== "closed") {
      var actions = make("div", "actions live-mod-actions");
      if (p.status === "draft") {
        actions.appendChild(button(S.open_poll, "btn small", function () {
          mod("poll_open", { poll: p.id }, "polls");
        }));
      } else {
        actions.appendChild(button(S.close_poll, "btn small secondary", function () {
          mod("poll_close", { poll: p.id }, "polls");
        }));
      }
      box.appendChild(actions);
    }
    return box;
  }

  function renderPolls() {
    var list = live("polls");
    if (!list) return;
    var all = Object.keys(polls).map(function (id) { return polls[id]; });
    all.sort(function (a, b) {
      return (POLL_ORDER[a.status] - POLL_ORDER[b.status]) || (b.id - a.id);
    });
    list.replaceChildren.apply(list, all.map(pollItem));
    showEmpty("polls", !all.length);
    dot("open-polls", all.filter(function (p) { return p.status === "open"; }).length);
  }

  var pollForm = $('[data-form="poll"]');
  if (pollForm) {
    pollForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var question = pollForm.querySelector('[name="question"]').value.trim();
      var options = Array.prototype.map.call(
        pollForm.querySelectorAll('[name="option"]'), function (i) { return i.value.trim(); }
      ).filter(function (v) { return v; });
      if (!question || options.length < 2) return;
      hideError("polls");
      mod("poll_create", { question: question, options: options }, "polls", function (ack) {
        pollForm.reset();
        // The ack names the new draft (its event may come before or after it).
        var id = typeof ack.poll === "number" ? ack.poll : ack.id;
        if (id === undefined || polls[id]) return;
        polls[id] = {
          id: id, question: question, status: "draft", total: 0, voted: null,
          options: options.map(function (label, i) { return { id: -1 - i, label: label, votes: 0 }; })
        };
        renderPolls();
      });
    });
  }

  // --- breakout rooms ----------------------------------------------------------------------------
  function renderRooms(rooms) {
    var list = live("rooms");
    var tab = $('[data-tab="rooms"]');
    if (!list || !tab) return;
    tab.hidden = !rooms.length;
    list.replaceChildren.apply(list, rooms.map(function (r) {
      var li = make("li", "live-room");
      li.setAttribute("data-room", r.key);
      var main = make("div", "live-q-main");
      main.appendChild(make("b", "", r.name));
      if (r.topic) main.appendChild(make("p", "small muted", r.topic));
      main.appendChild(make("span", "small live-room-count",
        fill(S.in_room, { n: numbers.format(r.count || 0), cap: numbers.format(r.capacity || 0) })));
      li.appendChild(main);
      var link = make("a", "btn small", S.enter);
      link.href = roomsBase + String(r.key).replace(/^r/, "");
      li.appendChild(link);
      return li;
    }));
  }

  // --- the console's settings ----------------------------------------------------------------------
  var toggle = $('[data-mod="toggle-pause"]');
  if (toggle) {
    toggle.addEventListener("click", function () {
      mod(settings.paused ? "resume" : "pause", {}, "settings");
    });
  }
  var slowForm = $('[data-form="slow"]');
  if (slowForm) {
    slowForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var seconds = Number(slowForm.querySelector("select").value) || 0;
      mod("slow", { seconds: seconds }, "settings", function () { showInfo("settings", S.done); });
    });
  }

  connect();
})();
