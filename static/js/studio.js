/*
 * Studio page behaviours (the canvas board itself is canvas.js). Plain script, loaded with
 * `defer`; it listens on `document`, so markup swapped in by htmx works without re-binding.
 *
 *   form[data-generate-form]      Ctrl/Cmd+Enter in it submits; old field errors clear on
 *                                 submit; the first Generate asks for notification permission
 *   event "generation-finished"   {id, status, prompt, url}: while the tab is hidden, a browser
 *                                 notification (when permitted) and a counter in the tab title
 *   [data-dropzone]               drop files (or choose them) to upload them with XHR, showing
 *                                 progress: data-upload-url, data-upload-target (selector),
 *                                 data-upload-swap (afterbegin|beforeend|replace),
 *                                 data-upload-field (default "file"); the response HTML is
 *                                 inserted and processed by htmx
 *   [data-focal-picker]           a click on the image inside sets the focal point: fills the
 *                                 x/y inputs of its form[data-focal-form] and submits it
 *   [data-focal-marker]           positioned at data-x/data-y (0..1)
 *   [data-compare]                before/after slider: input[data-compare-range] clips
 *                                 [data-compare-top]
 *   [data-live-preview="url"]     shows the image of a signed live URL
 *   [data-bulk]                   a list with checkboxes [data-bulk-item], a [data-bulk-all]
 *                                 checkbox, [data-bulk-count] and [data-bulk-action] buttons
 *                                 enabled only when something is selected
 */
(function () {
  "use strict";

  var doc = document;

  /* htmx copies "settling" attributes, style included, from a swapped-out element to its
     replacement with setAttribute; the strict CSP refuses style attributes. Positions set
     through element.style (canvas.js, focal markers) are re-applied by the scripts instead. */
  if (window.htmx && window.htmx.config) {
    window.htmx.config.attributesToSettle = ["class", "width", "height"];
  }

  function toast(message, level) {
    if (window.Pictor) window.Pictor.toast(message, level);
  }

  function csrfToken() {
    return window.Pictor ? window.Pictor.csrfToken() : "";
  }

  function each(root, selector, fn) {
    if (!root || !root.querySelectorAll) return;
    if (root.matches && root.matches(selector)) fn(root);
    Array.prototype.forEach.call(root.querySelectorAll(selector), fn);
  }

  /* Generate form ------------------------------------------------------------------------ */

  doc.addEventListener("keydown", function (evt) {
    if (evt.key !== "Enter" || !(evt.ctrlKey || evt.metaKey)) return;
    var form = evt.target.closest && evt.target.closest("form[data-generate-form]");
    if (!form) return;
    evt.preventDefault();
    if (form.requestSubmit) form.requestSubmit();
    else form.submit();
  });

  function clearErrors(form) {
    each(form, ".field--invalid", function (el) { el.classList.remove("field--invalid"); });
    each(form, "[aria-invalid]", function (el) { el.removeAttribute("aria-invalid"); });
    each(form, ".field__errors, [data-form-errors] > *", function (el) { el.remove(); });
  }

  doc.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (!form.matches || !form.matches("form[data-generate-form]")) return;
    clearErrors(form);
    if ("Notification" in window && Notification.permission === "default") {
      try {
        var asked = Notification.requestPermission();
        if (asked && asked.catch) asked.catch(function () { /* declined */ });
      } catch (e) { /* old browsers */ }
    }
  });

  /* Finished while hidden: notification and tab title ------------------------------------ */

  var baseTitle = doc.title;
  var unseen = 0;

  doc.addEventListener("generation-finished", function (evt) {
    var d = evt.detail || {};
    if (doc.visibilityState !== "hidden") return;
    unseen += 1;
    var ok = d.status === "success";
    doc.title = "(" + unseen + ") " + (ok ? "Image ready" : "Generation failed") + " · " + baseTitle;
    if ("Notification" in window && Notification.permission === "granted") {
      try {
        var note = new Notification(ok ? "Your image is ready" : "A generation failed", {
          body: d.prompt || "",
          tag: "pictor-" + (d.id || ""),
          icon: d.thumbnail || undefined
        });
        note.onclick = function () {
          window.focus();
          note.close();
        };
      } catch (e) { /* notifications need a service worker on some platforms */ }
    }
  });

  doc.addEventListener("visibilitychange", function () {
    if (doc.visibilityState === "visible" && unseen) {
      unseen = 0;
      doc.title = baseTitle;
    }
  });

  /* A polling card or history row whose generation was deleted elsewhere answers 404 every
     second: it no longer exists, so it leaves the page (the error toast says why, once). */
  doc.addEventListener("htmx:responseError", function (evt) {
    var d = evt.detail || {};
    var elt = d.elt;
    if (d.xhr && d.xhr.status === 404 && elt && elt.matches &&
        elt.matches('[data-board-item][hx-trigger="every 1s"], .history-row[hx-trigger="every 1s"]')) {
      elt.remove();
    }
  });

  /* Uploads: drag and drop with progress ------------------------------------------------- */

  function insertHtml(zone, html) {
    var target = doc.querySelector(zone.getAttribute("data-upload-target") || "") || null;
    if (!target) return;
    var swap = zone.getAttribute("data-upload-swap") || "afterbegin";
    var tpl = doc.createElement("template");
    tpl.innerHTML = html;
    var nodes = Array.prototype.slice.call(tpl.content.children);
    if (swap === "replace") {
      target.replaceChildren.apply(target, nodes);
    } else if (swap === "beforeend") {
      nodes.forEach(function (n) { target.appendChild(n); });
    } else {
      nodes.slice().reverse().forEach(function (n) { target.insertBefore(n, target.firstChild); });
    }
    nodes.forEach(function (n) {
      if (window.htmx) window.htmx.process(n);
      init(n);
    });
    target.dispatchEvent(new CustomEvent("pictor:uploaded", { bubbles: true, detail: { nodes: nodes } }));
  }

  function showUploadError(zone, message) {
    var box = zone.querySelector("[data-upload-error]");
    if (box) {
      box.textContent = message;
      box.hidden = false;
    }
    toast(message, "error");
  }

  /* The server's reason: the toast its error page carries for htmx requests (HX-Trigger). */
  function errorText(xhr) {
    try {
      var events = JSON.parse(xhr.getResponseHeader("HX-Trigger") || "{}");
      if (events.toast && events.toast.message) return events.toast.message;
    } catch (e) { /* not JSON */ }
    if (xhr.status === 413) return "File too large";
    if (xhr.status === 415) return "Unsupported image type: PNG, JPEG or WebP expected";
    return "The upload failed (" + (xhr.status || "network error") + ")";
  }

  function uploadOne(zone, file) {
    return new Promise(function (resolve) {
      var progress = zone.querySelector("[data-upload-progress]");
      var label = zone.querySelector("[data-upload-label]");
      var data = new FormData();
      data.append(zone.getAttribute("data-upload-field") || "file", file, file.name);
      var extra = zone.querySelectorAll("[data-upload-extra]");
      Array.prototype.forEach.call(extra, function (input) {
        if (input.name && input.value) data.append(input.name, input.value);
      });
      var xhr = new XMLHttpRequest();
      xhr.open("POST", zone.getAttribute("data-upload-url"));
      xhr.setRequestHeader("X-CSRFToken", csrfToken());
      xhr.setRequestHeader("HX-Request", "true");
      if (progress) {
        progress.hidden = false;
        progress.value = 0;
      }
      if (label) label.textContent = "Uploading " + file.name + "…";
      zone.classList.add("is-uploading");
      xhr.upload.addEventListener("progress", function (e) {
        if (progress && e.lengthComputable) progress.value = Math.round((e.loaded / e.total) * 100);
      });
      xhr.addEventListener("load", function () {
        if (xhr.status >= 200 && xhr.status < 300) {
          if (progress) progress.value = 100;
          insertHtml(zone, xhr.responseText);
          var trigger = xhr.getResponseHeader("HX-Trigger");
          if (trigger) fireTriggers(zone, trigger);
        } else {
          showUploadError(zone, errorText(xhr));
        }
        resolve();
      });
      xhr.addEventListener("error", function () {
        showUploadError(zone, "Network error: the upload did not finish");
        resolve();
      });
      xhr.send(data);
    });
  }

  function fireTriggers(elt, header) {
    var events = {};
    try { events = JSON.parse(header); } catch (e) { events[header] = null; }
    Object.keys(events).forEach(function (name) {
      elt.dispatchEvent(new CustomEvent(name, { bubbles: true, detail: events[name] }));
    });
  }

  function uploadAll(zone, files) {
    var list = Array.prototype.slice.call(files || []);
    if (!list.length) return;
    var box = zone.querySelector("[data-upload-error]");
    if (box) box.hidden = true;
    var chain = Promise.resolve();
    list.forEach(function (file) {
      chain = chain.then(function () { return uploadOne(zone, file); });
    });
    chain.then(function () {
      zone.classList.remove("is-uploading");
      var progress = zone.querySelector("[data-upload-progress]");
      var label = zone.querySelector("[data-upload-label]");
      if (progress) progress.hidden = true;
      if (label) label.textContent = label.getAttribute("data-idle") || "";
    });
  }

  function hasFiles(evt) {
    var types = evt.dataTransfer && evt.dataTransfer.types;
    return !!types && Array.prototype.indexOf.call(types, "Files") !== -1;
  }

  doc.addEventListener("dragover", function (evt) {
    var zone = evt.target.closest && evt.target.closest("[data-dropzone]");
    if (!zone || !hasFiles(evt)) return;
    evt.preventDefault();
    evt.dataTransfer.dropEffect = "copy";
    zone.classList.add("is-dragover");
  });

  doc.addEventListener("dragleave", function (evt) {
    var zone = evt.target.closest && evt.target.closest("[data-dropzone]");
    if (zone && !zone.contains(evt.relatedTarget)) zone.classList.remove("is-dragover");
  });

  doc.addEventListener("drop", function (evt) {
    var zone = evt.target.closest && evt.target.closest("[data-dropzone]");
    if (!zone || !hasFiles(evt)) return;
    evt.preventDefault();
    zone.classList.remove("is-dragover");
    uploadAll(zone, evt.dataTransfer.files);
  });

  doc.addEventListener("change", function (evt) {
    var input = evt.target;
    if (!input.matches || !input.matches("[data-dropzone] input[type=file]")) return;
    var zone = input.closest("[data-dropzone]");
    if (!zone.hasAttribute("data-upload-url")) return;
    uploadAll(zone, input.files);
    input.value = "";
  });

  /* A no-JS upload form becomes a drop zone: its submit button is not needed then. */
  function enhanceDropzones(root) {
    each(root, "[data-dropzone]", function (zone) {
      zone.classList.add("is-enhanced");
    });
  }

  /* Focal point -------------------------------------------------------------------------- */

  function placeMarkers(root) {
    each(root, "[data-focal-marker]", function (marker) {
      var x = parseFloat(marker.getAttribute("data-x"));
      var y = parseFloat(marker.getAttribute("data-y"));
      if (!isFinite(x) || !isFinite(y)) return;
      marker.style.left = (x * 100).toFixed(2) + "%";
      marker.style.top = (y * 100).toFixed(2) + "%";
      marker.hidden = false;
    });
  }

  doc.addEventListener("click", function (evt) {
    var picker = evt.target.closest && evt.target.closest("[data-focal-picker]");
    if (!picker || evt.target.closest("a, button")) return;
    var img = picker.querySelector("img");
    var form = picker.parentNode.querySelector("form[data-focal-form]") ||
      (picker.closest("[data-focal-scope]") || doc).querySelector("form[data-focal-form]");
    if (!img || !form) return;
    evt.preventDefault();
    var rect = img.getBoundingClientRect();
    var x = Math.min(1, Math.max(0, (evt.clientX - rect.left) / rect.width));
    var y = Math.min(1, Math.max(0, (evt.clientY - rect.top) / rect.height));
    form.querySelector("[name=x]").value = x.toFixed(3);
    form.querySelector("[name=y]").value = y.toFixed(3);
    var marker = picker.querySelector("[data-focal-marker]");
    if (marker) {
      marker.setAttribute("data-x", x.toFixed(3));
      marker.setAttribute("data-y", y.toFixed(3));
      placeMarkers(marker);
    }
    if (form.requestSubmit) form.requestSubmit();
    else form.submit();
  });

  /* Keyboard users set the focal point with the arrow keys on the focused picker. */
  doc.addEventListener("keydown", function (evt) {
    var picker = evt.target.matches && evt.target.matches("[data-focal-picker]") ? evt.target : null;
    if (!picker) return;
    var moves = { ArrowLeft: [-0.05, 0], ArrowRight: [0.05, 0], ArrowUp: [0, -0.05], ArrowDown: [0, 0.05] };
    if (!moves[evt.key] && evt.key !== "Enter") return;
    evt.preventDefault();
    var marker = picker.querySelector("[data-focal-marker]");
    var form = (picker.closest("[data-focal-scope]") || doc).querySelector("form[data-focal-form]");
    if (!marker || !form) return;
    if (evt.key === "Enter") {
      if (form.requestSubmit) form.requestSubmit();
      return;
    }
    var x = Math.min(1, Math.max(0, parseFloat(marker.getAttribute("data-x")) + moves[evt.key][0]));
    var y = Math.min(1, Math.max(0, parseFloat(marker.getAttribute("data-y")) + moves[evt.key][1]));
    marker.setAttribute("data-x", x.toFixed(3));
    marker.setAttribute("data-y", y.toFixed(3));
    form.querySelector("[name=x]").value = x.toFixed(3);
    form.querySelector("[name=y]").value = y.toFixed(3);
    placeMarkers(marker);
  });

  /* Compare slider ----------------------------------------------------------------------- */

  function setCompare(root) {
    var range = root.querySelector("[data-compare-range]");
    var top = root.querySelector("[data-compare-top]");
    var handle = root.querySelector("[data-compare-handle]");
    if (!range || !top) return;
    var pct = clampPct(parseFloat(range.value));
    top.style.clipPath = "inset(0 " + (100 - pct) + "% 0 0)";
    if (handle) handle.style.left = pct + "%";
  }

  function clampPct(v) {
    return isFinite(v) ? Math.min(100, Math.max(0, v)) : 50;
  }

  function initCompare(root) {
    each(root, "[data-compare]", function (el) {
      el.classList.add("is-enhanced");
      setCompare(el);
    });
  }

  doc.addEventListener("input", function (evt) {
    var range = evt.target;
    if (range.matches && range.matches("[data-compare-range]")) setCompare(range.closest("[data-compare]"));
  });

  /* Live URL preview --------------------------------------------------------------------- */

  doc.addEventListener("click", function (evt) {
    var button = evt.target.closest && evt.target.closest("[data-live-preview]");
    if (!button) return;
    var box = button.closest("[data-live-url]");
    var figure = box.querySelector("figure");
    var img = box.querySelector("[data-live-preview-img]");
    var status = box.querySelector("[data-live-preview-status]");
    figure.hidden = false;
    status.textContent = "Loading… the first request generates the image.";
    img.onload = function () { status.textContent = "Served by the live URL."; };
    img.onerror = function () { status.textContent = "The live URL did not answer with an image (check the daily limit and allowed origins)."; };
    img.src = button.getAttribute("data-live-preview");
  });

  /* Bulk selection ----------------------------------------------------------------------- */

  function syncBulk(list) {
    var items = list.querySelectorAll("[data-bulk-item]");
    var checked = list.querySelectorAll("[data-bulk-item]:checked").length;
    each(list, "[data-bulk-count]", function (el) {
      el.textContent = checked ? checked + " selected" : "";
    });
    each(list, "[data-bulk-action]", function (el) { el.disabled = checked === 0; });
    each(list, "[data-bulk-all]", function (el) {
      el.checked = checked > 0 && checked === items.length;
      el.indeterminate = checked > 0 && checked < items.length;
    });
  }

  doc.addEventListener("change", function (evt) {
    var el = evt.target;
    var list = el.closest && el.closest("[data-bulk]");
    if (!list) return;
    if (el.matches("[data-bulk-all]")) {
      Array.prototype.forEach.call(list.querySelectorAll("[data-bulk-item]"), function (box) {
        box.checked = el.checked;
      });
    }
    if (el.matches("[data-bulk-all], [data-bulk-item]")) syncBulk(list);
  });

  /* Initialise server-rendered and swapped-in content ------------------------------------ */

  function init(root) {
    enhanceDropzones(root);
    placeMarkers(root);
    initCompare(root);
    each(root, "[data-bulk]", syncBulk);
  }

  doc.addEventListener("htmx:load", function (evt) { init(evt.target); });
  if (doc.readyState === "loading") doc.addEventListener("DOMContentLoaded", function () { init(doc.body); });
  else init(doc.body);
})();
