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

  function human(n) {
    if (n < 1024) return n + (n === 1 ? " byte" : " bytes");
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
    if (xhr.status === 413) return "That upload is too large: the limit is " + maxHuman + ".";
    return "The upload failed (HTTP " + xhr.status + ").";
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var files = input.files;
    if (!files || files.length === 0) { say("Choose at least one file.", true); return; }
    var maxBytes = parseInt(form.getAttribute("data-max-bytes"), 10);
    var total = 0;
    for (var i = 0; i < files.length; i++) total += files[i].size;
    if (total > maxBytes) {
      say("That upload is too large (" + human(total) + "): the limit is " + maxHuman + ".", true);
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
    say("Uploading…");
    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable) return;
      var percent = Math.floor((e.loaded / e.total) * 100);
      var seconds = Math.max((Date.now() - started) / 1000, 0.001);
      bar.value = percent;
      say(percent + " % · " + human(e.loaded) + " of " + human(e.total) + " · " + human(e.loaded / seconds) + "/s");
    });
    xhr.addEventListener("load", function () {
      button.disabled = false;
      if (xhr.status === 201) {
        var items = JSON.parse(xhr.responseText).items;
        items.forEach(addItem);
        bar.value = 100;
        var seconds = Math.max((Date.now() - started) / 1000, 0.001);
        say("100 % · " + items.length + (items.length === 1 ? " file" : " files") + " attached (" +
            human(total) + " at " + human(total / seconds) + "/s).");
        form.reset();
      } else {
        bar.hidden = true;
        say(errorMessage(xhr), true);
      }
    });
    xhr.addEventListener("error", function () {
      button.disabled = false;
      bar.hidden = true;
      say("The upload failed: the connection was closed. Check your network (and that the files are under " +
          maxHuman + ") and try again.", true);
    });
    xhr.send(data);
  });
})();
