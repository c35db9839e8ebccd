// Every page: <time datetime> elements shown in the reader's own time zone (relative when recent:
// "5 minutes ago", "5 分钟前"; the full time on hover; only the day, once not recent, inside
// [data-dates=short]), in the page's language; and the header's menu closes on Escape or a click
// elsewhere. Without this script the pages show UTC, labelled.
(function () {
  "use strict";
  var menu = document.getElementById("site-menu");
  if (menu) {
    document.addEventListener("click", function (event) {
      if (menu.open && !menu.contains(event.target)) menu.open = false;
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && menu.open) {
        menu.open = false;
        menu.querySelector("summary").focus();
      }
    });
  }

  var lang = document.documentElement.lang || undefined;
  if (!window.Intl || !Intl.DateTimeFormat) return;
  var RECENT = 7 * 24 * 3600;  // seconds: younger times read as "3 days ago"
  var UNITS = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400],
               ["hour", 3600], ["minute", 60]];
  var relativeFormat = Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(lang, {numeric: "auto"}) : null;
  var full = new Intl.DateTimeFormat(lang, {year: "numeric", month: "long", day: "numeric", weekday: "long",
                                            hour: "2-digit", minute: "2-digit", timeZoneName: "short"});
  var dateOnly = new Intl.DateTimeFormat(lang, {year: "numeric", month: "short", day: "numeric"});
  var dateTime = new Intl.DateTimeFormat(lang, {year: "numeric", month: "short", day: "numeric",
                                                hour: "2-digit", minute: "2-digit"});

  function relative(seconds) {
    var size = Math.abs(seconds);
    for (var i = 0; i < UNITS.length; i++) {
      if (size >= UNITS[i][1]) return relativeFormat.format(Math.round(seconds / UNITS[i][1]), UNITS[i][0]);
    }
    return relativeFormat.format(0, "second");  // "now", "现在"
  }

  function show(el, now) {
    var when = new Date(el.getAttribute("datetime"));
    if (isNaN(when)) return;
    var seconds = (when.getTime() - now) / 1000;
    el.title = full.format(when);
    if (relativeFormat && Math.abs(seconds) < RECENT) {
      el.textContent = relative(seconds);
    } else {
      el.textContent = (el.closest("[data-dates=short]") ? dateOnly : dateTime).format(when);
    }
  }

  function showAll() {
    var now = Date.now();
    var times = document.querySelectorAll("main time[datetime]");
    for (var i = 0; i < times.length; i++) {
      if (!times[i].closest("#chat-log")) show(times[i], now);  // chat.js writes its own
    }
  }

  showAll();
  setInterval(showAll, 60 * 1000);  // "2 minutes ago" stays true while the page is open
})();
