// The story page's upload form, enhanced: a real progress bar (XHR upload progress), the speed,
// the new files listed without a reload, errors shown as text. Without this script the form
// still works as a plain form. Text is always inserted as text, never as HTML.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.FormData) return;
  var input = document.getElementById("upload-files");
  var bar = document.getElementById("upload-progress");
  var status = document.getElementById("upload-status");
  var list = document.getElementById("attachment-list");
  var empty = document.getElementById("attachments-empty");
  var button = form.querySelector("button[type=submit]");
  var maxHuman = form.getAttribute("data-max-human");

  // The page's words come from data-text-* attributes on the form (translated by the server; no
  // inline script under the CSP); {name} placeholders are filled in here, as text.
  function text(key, values) {
    var template = form.getAttribute("data-text-" + key) || "";
    return template.replace(/\{(\w+)\}/g, function (whole, name) {
      return values && Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : whole;
    });
  }

  function human(n) {
    if (n < 1024) return text(n === 1 ? "byte" : "bytes", {n: Math.round(n)});
    var units = ["KB", "MB", "GB", "TB"];
    for (var i = 0; i < units.length; i++) {
      n /= 1024;
      if (n < 1024 || i === units.length - 1) return (n < 10 ? n.toFixed(1) : Math.round(n)) + " " + units[i];
    }
  }

  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle("form-error", !!isError);
  }

  function addItem(item) {
    var li = document.createElement("li");
    li.className = "attachment";
    if (item.image) {
      var thumbLink = document.createElement("a");
      thumbLink.href = item.url;
      thumbLink.className = "thumb-link";
      var img = document.createElement("img");
      img.className = "thumb";
      img.src = item.url;
      img.alt = "";
      img.width = 64;
      img.height = 64;
      thumbLink.appendChild(img);
      li.appendChild(thumbLink);
    }
    var text = document.createElement("span");
    text.className = "attachment-text";
    var link = document.createElement("a");
    link.href = item.url;
    link.className = "attachment-name";
    link.textContent = item.filename;
    var meta = document.createElement("small");
    meta.className = "attachment-meta";
    meta.textContent = item.size_human + " · " + item.content_type;
    text.appendChild(link);
    text.appendChild(document.createTextNode(" "));
    text.appendChild(meta);
    li.appendChild(text);
    list.appendChild(li);
    empty.hidden = true;
  }

  function errorMessage(xhr) {
    try {
      var body = JSON.parse(xhr.responseText);
      if (body && body.error && body.error.message) return body.error.message;
    } catch (e) { /* not JSON: fall through */ }
    if (xhr.status === 413) return text("too-large-limit");
    return text("failed", {status: xhr.status});
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var files = input.files;
    if (!files || files.length === 0) { say(text("choose"), true); return; }
    var maxBytes = parseInt(form.getAttribute("data-max-bytes"), 10);
    var total = 0;
    for (var i = 0; i < files.length; i++) total += files[i].size;
    if (total > maxBytes) {
      say(text("too-large", {size: human(total), limit: maxHuman}), true);
      return;
    }
    var data = new FormData(form);
    var xhr = new XMLHttpRequest();
    var started = Date.now();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("Accept", "application/json");
    var token = form.querySelector("input[name=_xsrf]");
    if (token) xhr.setRequestHeader("X-XSRFToken", token.value);
    bar.hidden = false;
    bar.value = 0;
    button.disabled = true;
    say(text("uploading"));
    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable) return;
      var percent = Math.floor((e.loaded / e.total) * 100);
      var seconds = Math.max((Date.now() - started) / 1000, 0.001);
      bar.value = percent;
      say(text("progress", {percent: percent, loaded: human(e.loaded), total: human(e.total), speed: human(e.loaded / seconds)}));
    });
    xhr.addEventListener("load", function () {
      button.disabled = false;
      if (xhr.status === 201) {
        var items = JSON.parse(xhr.responseText).items;
        items.forEach(addItem);
        bar.value = 100;
        var seconds = Math.max((Date.now() - started) / 1000, 0.001);
        say(text(items.length === 1 ? "done-one" : "done-many",
                 {count: items.length, size: human(total), speed: human(total / seconds)}));
        form.reset();
      } else {
        bar.hidden = true;
        say(errorMessage(xhr), true);
      }
    });
    xhr.addEventListener("error", function () {
      button.disabled = false;
      bar.hidden = true;
      say(text("network", {limit: maxHuman}), true);
    });
    xhr.send(data);
  });
})();
