// The chat page: one WebSocket to /chat/ws, reconnected with backoff. Text goes in with
// textContent only, never as HTML.
(function () {
  "use strict";
  var root = document.getElementById("chat");
  if (!root) { return; }
  var log = document.getElementById("chat-log");
  var users = document.getElementById("chat-users");
  var statusLine = document.getElementById("chat-status");
  var form = document.getElementById("chat-form");
  var input = document.getElementById("chat-input");
  var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + root.dataset.ws;
  var socket = null;
  var delay = 500;  // ms before the next reconnect; doubles up to 15 s
  var online = [];
  var stopped = false;
  var count = document.getElementById("chat-count");
  var pageLang = document.documentElement.lang || undefined;
  // The page's words come from data-text-* attributes (translated by the server; no inline script
  // under the CSP), {name} filled in here as text. Error frames stay English on the wire and are
  // looked up in data-text-errors (English → the page's language).
  var errorTexts = {};
  try { errorTexts = JSON.parse(root.getAttribute("data-text-errors") || "{}"); } catch (e) { /* keep {} */ }

  function text(key, values) {
    var template = root.getAttribute("data-text-" + key) || "";
    return template.replace(/\{(\w+)\}/g, function (whole, name) {
      return values && Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : whole;
    });
  }

  function setStatus(text, bad) {
    statusLine.textContent = text;
    statusLine.classList.toggle("bad", !!bad);
  }

  function localTime(iso) {
    var t = document.createElement("time");
    var d = new Date(iso);
    t.dateTime = iso;
    t.textContent = isNaN(d) ? "" : d.toLocaleTimeString(pageLang, {hour: "2-digit", minute: "2-digit"});
    t.title = isNaN(d) ? "" : d.toLocaleString(pageLang);
    return t;
  }

  function add(li) {
    var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.appendChild(li);
    while (log.children.length > 500) { log.removeChild(log.firstChild); }
    if (atBottom) { log.scrollTop = log.scrollHeight; }
  }

  function showMessage(m) {
    var li = document.createElement("li");
    li.className = "message";
    li.appendChild(localTime(m.at));
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = m.user;
    var body = document.createElement("span");
    body.className = "body";
    body.textContent = m.body;
    li.appendChild(who);
    li.appendChild(body);
    add(li);
  }

  function showNotice(text, kind, at) {
    var li = document.createElement("li");
    li.className = kind || "notice";
    if (at) { li.appendChild(localTime(at)); }
    li.appendChild(document.createTextNode(text));
    add(li);
  }

  function showUsers() {
    while (users.firstChild) { users.removeChild(users.firstChild); }
    online.forEach(function (name) {
      var li = document.createElement("li");
      li.textContent = name;
      users.appendChild(li);
    });
    if (count) { count.textContent = text(online.length === 1 ? "online-one" : "online-many", {count: online.length}); }
  }

  function onFrame(event) {
    var f;
    try { f = JSON.parse(event.data); } catch (e) { return; }
    if (f.type === "message") {
      showMessage(f);
    } else if (f.type === "history") {
      while (log.firstChild) { log.removeChild(log.firstChild); }
      f.items.forEach(showMessage);
      log.scrollTop = log.scrollHeight;
    } else if (f.type === "presence") {
      online = f.users.slice();
      showUsers();
    } else if (f.type === "join") {
      if (online.indexOf(f.user) < 0) { online.push(f.user); online.sort(); showUsers(); }
      showNotice(text("joined", {user: f.user}), "notice", f.at);
    } else if (f.type === "leave") {
      online = online.filter(function (n) { return n !== f.user; });
      showUsers();
      showNotice(text("left", {user: f.user}), "notice", f.at);
    } else if (f.type === "error") {
      showNotice(Object.prototype.hasOwnProperty.call(errorTexts, f.message) ? errorTexts[f.message] : f.message, "error");
    }
  }

  function connect() {
    setStatus(text(delay > 500 ? "reconnecting" : "connecting"), delay > 500);
    socket = new WebSocket(url);
    socket.onopen = function () {
      delay = 500;
      setStatus(text("connected"));
    };
    socket.onmessage = onFrame;
    socket.onclose = function (e) {
      socket = null;
      if (e.code === 4001) {  // the session ended: reconnecting would be refused
        stopped = true;
        setStatus(text("signed-out"), true);
        return;
      }
      if (stopped) { return; }
      var wait = delay * (0.75 + Math.random() / 2);
      delay = Math.min(delay * 2, 15000);
      setStatus(text("reconnecting"), true);
      setTimeout(connect, wait);
    };
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();  // Enter in the input submits the form
    var text = input.value.trim();
    if (!text) { return; }
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      setStatus(text("not-connected"), true);
      return;  // the input keeps the text
    }
    socket.send(JSON.stringify({body: text}));
    input.value = "";
  });

  window.addEventListener("beforeunload", function () { stopped = true; });
  connect();
}());
