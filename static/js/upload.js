// The story page's upload form, enhanced: files dropped anywhere on the drop zone, a real progress
// bar (XHR upload progress), the speed, the new files listed without a reload, errors shown as
// text. Without this script the form still works as a plain form. Text is always inserted as
// text, never as HTML.
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
  var zone = document.getElementById("drop-zone");
  var kinds = {kinds: [], other: ""};
  try { kinds = JSON.parse(form.getAttribute("data-kinds")) || kinds; } catch (e) { /* keep the default */ }

  // "Text file", "Image", ...: the server's table (views/filekinds.py), translated.
  function kindOf(contentType) {
    var type = String(contentType || "").toLowerCase();
    for (var i = 0; i < kinds.kinds.length; i++) {
      if (type.indexOf(kinds.kinds[i][0]) === 0) return kinds.kinds[i][1];
    }
    return kinds.other;
  }

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
    var link = document.createElement("a");
    link.href = item.url;
    link.className = "attachment-link";
    if (item.image) {
      var img = document.createElement("img");
      img.className = "thumb";
      img.src = item.url;
      img.alt = "";
      img.width = 48;
      img.height = 48;
      link.appendChild(img);
    } else {
      var icon = document.createElement("span");
      icon.className = "file-icon";
      icon.setAttribute("aria-hidden", "true");
      link.appendChild(icon);
    }
    var text = document.createElement("span");
    text.className = "attachment-text";
    var name = document.createElement("span");
    name.className = "attachment-name";
    name.textContent = item.filename;
    var meta = document.createElement("small");
    meta.className = "attachment-meta";
    meta.textContent = kindOf(item.content_type) + " · " + item.size_human;
    text.appendChild(name);
    text.appendChild(document.createTextNode(" "));
    text.appendChild(meta);
    link.appendChild(text);
    li.appendChild(link);
    list.appendChild(li);
    empty.hidden = true;
  }

  function totalSize(files) {
    var total = 0;
    for (var i = 0; i < files.length; i++) total += files[i].size;
    return total;
  }

  function sayChosen() {
    var files = input.files;
    if (!files || files.length === 0) { say(""); return; }
    say(text(files.length === 1 ? "chosen-one" : "chosen-many", {count: files.length, size: human(totalSize(files))}));
  }

  input.addEventListener("change", sayChosen);
  // Files dropped on the zone go into the form's own input (a DataTransfer's FileList).
  if (zone) {
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) {
        event.preventDefault();
        zone.classList.add("dragging");
      });
    });
    ["dragleave", "dragend", "drop"].forEach(function (name) {
      zone.addEventListener(name, function () { zone.classList.remove("dragging"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
        sayChosen();
      }
    });
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
    var total = totalSize(files);
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
