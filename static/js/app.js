/*
 * Pictor page behaviours. A plain script loaded with `defer` after htmx; it only listens on
 * `document`, so content swapped in by htmx works without re-binding. Markup hooks:
 *
 *   <meta name="csrf-token">         X-CSRFToken header on every htmx request
 *   data-copy="#selector|text"       copy an element's value/text (selector starting with # . or [)
 *                                    or the literal text; shows "Copied"
 *   data-confirm="Message"           on a form, submit button, button or link: ask first
 *                                    (plain submits and htmx requests alike)
 *   data-dismiss                     remove the enclosing .toast/.alert
 *   data-open-dialog="id"            showModal() the <dialog id="id">
 *   data-close-dialog[="id"]         close that dialog, or the enclosing one
 *   dialog[data-open-on-load]        opened as soon as it is on the page (e.g. swapped in by htmx)
 *   data-nav-toggle                  the small-screen menu button
 *
 * Events (e.g. from an HX-Trigger response header):
 *   toast            {message, level, title?}   show a toast (level: success|info|warning|error)
 *   credits-changed  {balance}                  update every [data-credit-balance]
 *   close-dialog     {id?}                      close a dialog (the requester's, or all)
 *
 * window.Pictor = {toast(message, level, title), csrfToken(), copy(text)} for page scripts.
 */
(function () {
  "use strict";

  var doc = document;
  var AUTO_DISMISS_MS = 5000;
  var COPIED_MS = 2000;
  var CONFIRM_WINDOW_MS = 2000;
  var LEVELS = ["success", "info", "warning", "error"];

  function reducedMotion() {
    return window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  }

  function closest(target, selector) {
    return target && target.closest ? target.closest(selector) : null;
  }

  /* 1. CSRF ------------------------------------------------------------------------------ */

  function csrfToken() {
    var meta = doc.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") || "" : "";
  }

  doc.addEventListener("htmx:configRequest", function (evt) {
    var token = csrfToken();
    if (token && evt.detail && evt.detail.headers) {
      evt.detail.headers["X-CSRFToken"] = token;
    }
  });

  /* 4 + 5. Toasts ------------------------------------------------------------------------ */

  var initialised = typeof WeakSet === "function" ? new WeakSet() : null;

  function firstTime(el) {
    if (!initialised) return true;
    if (initialised.has(el)) return false;
    initialised.add(el);
    return true;
  }

  function normaliseLevel(level) {
    level = String(level || "info").toLowerCase();
    if (level === "danger") return "error";
    return LEVELS.indexOf(level) === -1 ? "info" : level;
  }

  function toastRegion() {
    var region = doc.getElementById("toasts");
    if (!region) {
      region = doc.createElement("div");
      region.id = "toasts";
      region.className = "toast-region";
      region.setAttribute("role", "region");
      region.setAttribute("aria-label", "Notifications");
      region.setAttribute("aria-live", "polite");
      doc.body.appendChild(region);
    }
    return region;
  }

  function buildToast(message, level, title) {
    var template = doc.querySelector('template[data-toast-template="' + level + '"]');
    var el = template && template.content.firstElementChild
      ? template.content.firstElementChild.cloneNode(true)
      : null;
    if (!el) {
      el = doc.createElement("div");
      el.className = "toast toast--" + level;
      el.setAttribute("role", level === "error" ? "alert" : "status");
      el.setAttribute("data-toast", "");
      el.setAttribute("data-level", level);
      var body = doc.createElement("div");
      body.className = "toast__body";
      var text = doc.createElement("p");
      text.className = "toast__text";
      body.appendChild(text);
      var close = doc.createElement("button");
      close.type = "button";
      close.className = "toast__close";
      close.setAttribute("data-dismiss", "");
      close.setAttribute("aria-label", "Dismiss notification");
      close.textContent = "\u00d7";
      el.appendChild(body);
      el.appendChild(close);
    }
    el.querySelector(".toast__text").textContent = message;
    if (title) {
      var heading = doc.createElement("p");
      heading.className = "toast__title";
      heading.textContent = title;
      var textEl = el.querySelector(".toast__text");
      textEl.parentNode.insertBefore(heading, textEl);
    }
    return el;
  }

  function showToast(message, level, title) {
    if (!message) return null;
    level = normaliseLevel(level);
    var region = toastRegion();
    // The same message twice in a row (a polling element failing, say) shows once.
    var existing = region.querySelectorAll("[data-toast]");
    for (var i = 0; i < existing.length; i++) {
      var t = existing[i].querySelector(".toast__text");
      if (!existing[i].hasAttribute("data-leaving") && t && t.textContent === String(message)) {
        return existing[i];
      }
    }
    var el = buildToast(String(message), level, title);
    region.appendChild(el);
    initToast(el);
    return el;
  }

  function dismiss(el) {
    if (!el || el.hasAttribute("data-leaving")) return;
    el.setAttribute("data-leaving", "");
    if (el._pictorTimer) clearTimeout(el._pictorTimer);
    if (reducedMotion() || !el.classList.contains("toast")) {
      el.remove();
      return;
    }
    el.classList.add("is-leaving");
    el.addEventListener("animationend", function () { el.remove(); }, { once: true });
    setTimeout(function () { el.remove(); }, 600);
  }

  function scheduleDismiss(el) {
    if (el._pictorTimer) clearTimeout(el._pictorTimer);
    el._pictorTimer = setTimeout(function () { dismiss(el); }, AUTO_DISMISS_MS);
  }

  function initToast(el) {
    if (!firstTime(el)) return;
    var level = el.getAttribute("data-level");
    if (level !== "success" && level !== "info") return;
    scheduleDismiss(el);
    // Reading or pointing at a toast keeps it.
    el.addEventListener("mouseenter", function () { clearTimeout(el._pictorTimer); });
    el.addEventListener("focusin", function () { clearTimeout(el._pictorTimer); });
    el.addEventListener("mouseleave", function () {
      if (!el.contains(doc.activeElement)) scheduleDismiss(el);
    });
    el.addEventListener("focusout", function (evt) {
      if (!el.contains(evt.relatedTarget)) scheduleDismiss(el);
    });
  }

  doc.addEventListener("toast", function (evt) {
    var d = evt.detail;
    if (d === null || d === undefined) return;
    if (typeof d === "string") {
      showToast(d, "info");
      return;
    }
    showToast(d.message || d.value, d.level, d.title);
  });

  /* Requests that fail without swapping (responseHandling: [45].. → swap:false, error:true)
     would otherwise fail silently. The server may explain itself with an HX-Trigger toast. */
  var STATUS_MESSAGES = {
    400: "That request could not be completed. Reload the page and try again.",
    401: "Your session has ended. Please sign in again.",
    402: "Not enough credits.",
    403: "You don't have permission to do that.",
    404: "That item no longer exists.",
    409: "That changed in the meantime. Reload the page and try again.",
    410: "That link has expired.",
    412: "That changed in the meantime. Reload the page and try again.",
    413: "File too large",
    415: "Unsupported image type.",
    429: "Too many requests. Please wait a moment and try again."
  };

  function errorMessage(xhr) {
    var type = xhr.getResponseHeader("Content-Type") || "";
    if (type.indexOf("json") !== -1) {
      try {
        var body = JSON.parse(xhr.responseText);
        if (body && body.error && body.error.message) return body.error.message;
      } catch (e) { /* not JSON after all */ }
    }
    if (STATUS_MESSAGES[xhr.status]) return STATUS_MESSAGES[xhr.status];
    if (xhr.status >= 500) return "Something went wrong on our side. Please try again.";
    return "The request failed (" + xhr.status + ").";
  }

  doc.addEventListener("htmx:responseError", function (evt) {
    var xhr = evt.detail && evt.detail.xhr;
    if (!xhr) return;
    var trigger = xhr.getResponseHeader("HX-Trigger") || "";
    if (/"toast"|^\s*toast\s*$/.test(trigger)) return;
    showToast(errorMessage(xhr), "error");
  });

  doc.addEventListener("htmx:sendError", function () {
    showToast("Network error. Check your connection and try again.", "error");
  });

  /* 6. Credits --------------------------------------------------------------------------- */

  doc.addEventListener("credits-changed", function (evt) {
    var d = evt.detail || {};
    var balance = d.balance !== undefined ? d.balance : d.value;
    if (balance === undefined || balance === null) return;
    var nodes = doc.querySelectorAll("[data-credit-balance]");
    for (var i = 0; i < nodes.length; i++) {
      nodes[i].textContent = String(balance);
      var pill = closest(nodes[i], ".credit-pill");
      if (pill && !reducedMotion()) {
        pill.classList.remove("is-updated");
        void pill.offsetWidth; // restart the animation
        pill.classList.add("is-updated");
      }
    }
  });

  /* 2. Copy ------------------------------------------------------------------------------ */

  var statusRegion = null;

  function announce(message) {
    if (!statusRegion) {
      statusRegion = doc.createElement("div");
      statusRegion.className = "visually-hidden";
      statusRegion.setAttribute("role", "status");
      statusRegion.setAttribute("aria-live", "polite");
      doc.body.appendChild(statusRegion);
    }
    statusRegion.textContent = "";
    setTimeout(function () { statusRegion.textContent = message; }, 50);
  }

  function copyText(text, near) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain-http installs have no Clipboard API: select a hidden textarea instead. Inside an
    // open modal dialog the rest of the page is inert, so the textarea goes in the dialog.
    return new Promise(function (resolve, reject) {
      var host = (near && closest(near, "dialog[open]")) || doc.body;
      var area = doc.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.setAttribute("aria-hidden", "true");
      area.tabIndex = -1;
      area.className = "copy-buffer";
      host.appendChild(area);
      area.select();
      var ok = false;
      try { ok = doc.execCommand("copy"); } catch (e) { ok = false; }
      area.remove();
      if (near && near.focus) near.focus();
      if (ok) resolve(); else reject(new Error("Copy failed"));
    });
  }

  function copySource(spec) {
    if (/^[#.[]/.test(spec)) {
      var el = null;
      try { el = doc.querySelector(spec); } catch (e) { el = null; }
      if (el) {
        if (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT") {
          return el.value;
        }
        return el.textContent.trim();
      }
    }
    return spec;
  }

  function showCopied(button, ok) {
    var label = button.querySelector("[data-copy-label]");
    var iconOnly = !label && button.children.length > 0;
    if (button._pictorCopy === undefined) {
      button._pictorCopy = {
        text: label ? label.textContent : (iconOnly ? null : button.textContent),
        aria: button.getAttribute("aria-label")
      };
    }
    var saved = button._pictorCopy;
    var message = ok ? "Copied" : "Copy failed";
    if (label) label.textContent = message;
    else if (!iconOnly) button.textContent = message;
    if (saved.aria !== null) button.setAttribute("aria-label", message);
    button.classList.toggle("is-copied", ok);
    announce(ok ? "Copied to clipboard" : "Could not copy to the clipboard");
    clearTimeout(button._pictorCopyTimer);
    button._pictorCopyTimer = setTimeout(function () {
      if (label) label.textContent = saved.text;
      else if (!iconOnly) button.textContent = saved.text;
      if (saved.aria !== null) button.setAttribute("aria-label", saved.aria);
      button.classList.remove("is-copied");
    }, COPIED_MS);
  }

  /* 3. Confirmation ---------------------------------------------------------------------- */
  /* A click or submit is confirmed once, before htmx sees it; htmx:confirm then lets the
     request through. Requests htmx starts on other triggers are confirmed in htmx:confirm. */

  var confirmedAt = typeof WeakMap === "function" ? new WeakMap() : null;

  function markConfirmed(el) {
    if (el && confirmedAt) confirmedAt.set(el, Date.now());
  }

  function recentlyConfirmed(el) {
    if (!el || !confirmedAt) return false;
    var at = confirmedAt.get(el);
    if (at && Date.now() - at < CONFIRM_WINDOW_MS) {
      confirmedAt.delete(el);
      return true;
    }
    return false;
  }

  function isSubmitButton(el) {
    if (!el.form) return false;
    if (el.tagName === "BUTTON") return (el.getAttribute("type") || "submit").toLowerCase() === "submit";
    return el.tagName === "INPUT" && /^(submit|image)$/i.test(el.type);
  }

  doc.addEventListener("click", function (evt) {
    var el = closest(evt.target, "button[data-confirm], a[data-confirm], input[data-confirm]");
    if (!el || el.disabled) return;
    if (isSubmitButton(el)) return; // asked at submit time, with the form
    if (window.confirm(el.getAttribute("data-confirm"))) {
      markConfirmed(el);
    } else {
      evt.preventDefault();
      evt.stopImmediatePropagation();
    }
  }, true);

  doc.addEventListener("submit", function (evt) {
    var form = evt.target;
    var submitter = evt.submitter || null;
    var message = (submitter && submitter.getAttribute("data-confirm")) || form.getAttribute("data-confirm");
    if (!message) return;
    if (window.confirm(message)) {
      markConfirmed(form);
      markConfirmed(submitter);
    } else {
      evt.preventDefault();
      evt.stopImmediatePropagation();
    }
  }, true);

  doc.addEventListener("htmx:confirm", function (evt) {
    var detail = evt.detail || {};
    var elt = detail.elt;
    if (!elt || !elt.getAttribute) return;
    var trigger = detail.triggeringEvent;
    var submitter = trigger && trigger.submitter;
    var message = (submitter && submitter.getAttribute("data-confirm")) || elt.getAttribute("data-confirm");
    if (!message) return;
    if (recentlyConfirmed(elt) || recentlyConfirmed(submitter)) return;
    evt.preventDefault();
    if (window.confirm(message)) detail.issueRequest(true);
  });

  /* 7. Dialogs --------------------------------------------------------------------------- */

  function openDialog(dialog) {
    if (!dialog || dialog.open) return;
    if (typeof dialog.showModal === "function") dialog.showModal();
    else dialog.setAttribute("open", "");
  }

  function closeDialog(dialog, value) {
    if (!dialog || !dialog.open) return;
    if (typeof dialog.close === "function") dialog.close(value || "");
    else dialog.removeAttribute("open");
  }

  doc.addEventListener("close-dialog", function (evt) {
    var d = evt.detail || {};
    var target = d.id ? doc.getElementById(d.id) : closest(evt.target, "dialog");
    if (target) {
      closeDialog(target);
      return;
    }
    var open = doc.querySelectorAll("dialog[open]");
    for (var i = 0; i < open.length; i++) closeDialog(open[i]);
  });

  /* Small-screen nav and <details> menus ----------------------------------------------- */

  function setNavOpen(header, open) {
    var toggle = header.querySelector("[data-nav-toggle]");
    header.classList.toggle("is-nav-open", open);
    if (toggle) {
      toggle.setAttribute("aria-expanded", String(open));
      toggle.setAttribute("aria-label", open ? "Close menu" : "Open menu");
    }
  }

  function closeMenus(except) {
    var menus = doc.querySelectorAll("details[data-menu][open]");
    for (var i = 0; i < menus.length; i++) {
      if (menus[i] !== except) menus[i].removeAttribute("open");
    }
  }

  /* One click handler for the rest ------------------------------------------------------- */

  doc.addEventListener("click", function (evt) {
    var target = evt.target;

    var copyButton = closest(target, "[data-copy]");
    if (copyButton) {
      evt.preventDefault();
      var text = copySource(copyButton.getAttribute("data-copy"));
      copyText(text, copyButton).then(
        function () { showCopied(copyButton, true); },
        function () { showCopied(copyButton, false); }
      );
      return;
    }

    var dismisser = closest(target, "[data-dismiss]");
    if (dismisser) {
      dismiss(closest(dismisser, "[data-toast], .toast, .alert, [data-dismissible]"));
      return;
    }

    var opener = closest(target, "[data-open-dialog]");
    if (opener) {
      var dialog = doc.getElementById(opener.getAttribute("data-open-dialog"));
      if (dialog) {
        evt.preventDefault();
        openDialog(dialog);
      }
      return;
    }

    var closer = closest(target, "[data-close-dialog]");
    if (closer) {
      var id = closer.getAttribute("data-close-dialog");
      var toClose = id ? doc.getElementById(id) : closest(closer, "dialog");
      if (toClose) {
        evt.preventDefault();
        closeDialog(toClose, closer.value);
      }
      return;
    }

    // A click on a modal's backdrop lands on the <dialog> itself, outside its box.
    if (target.tagName === "DIALOG" && target.open && !target.hasAttribute("data-static")) {
      var r = target.getBoundingClientRect();
      var inside = evt.clientX >= r.left && evt.clientX <= r.right && evt.clientY >= r.top && evt.clientY <= r.bottom;
      if (!inside && (evt.clientX || evt.clientY)) closeDialog(target);
      return;
    }

    var navToggle = closest(target, "[data-nav-toggle]");
    if (navToggle) {
      var header = closest(navToggle, "[data-site-header]") || navToggle.parentNode;
      setNavOpen(header, !header.classList.contains("is-nav-open"));
      return;
    }

    closeMenus(closest(target, "details[data-menu]"));

    var navLink = closest(target, ".site-nav a");
    if (navLink) {
      var navHeader = closest(navLink, "[data-site-header]");
      if (navHeader) setNavOpen(navHeader, false);
    }
  });

  doc.addEventListener("keydown", function (evt) {
    if (evt.key !== "Escape") return;
    var menu = doc.querySelector("details[data-menu][open]");
    if (menu) {
      menu.removeAttribute("open");
      var summary = menu.querySelector("summary");
      if (summary) summary.focus();
      return;
    }
    var header = doc.querySelector("[data-site-header].is-nav-open");
    if (header) {
      setNavOpen(header, false);
      var toggle = header.querySelector("[data-nav-toggle]");
      if (toggle) toggle.focus();
    }
  });

  /* Initialise server-rendered and swapped-in content ----------------------------------- */

  function initWithin(root) {
    if (!root || !root.querySelectorAll) return;
    var toasts = root.querySelectorAll("[data-toast]");
    if (root.matches && root.matches("[data-toast]")) initToast(root);
    for (var i = 0; i < toasts.length; i++) initToast(toasts[i]);

    var dialogs = root.querySelectorAll("dialog[data-open-on-load]");
    if (root.matches && root.matches("dialog[data-open-on-load]") && firstTime(root)) openDialog(root);
    for (var j = 0; j < dialogs.length; j++) {
      if (firstTime(dialogs[j])) openDialog(dialogs[j]);
    }
  }

  doc.addEventListener("htmx:load", function (evt) { initWithin(evt.target); });
  if (doc.readyState === "loading") {
    doc.addEventListener("DOMContentLoaded", function () { initWithin(doc.body); });
  } else {
    initWithin(doc.body);
  }

  window.Pictor = {
    toast: showToast,
    csrfToken: csrfToken,
    copy: function (text) { return copyText(String(text)); }
  };
})();
