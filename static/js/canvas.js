/*
 * The canvas board: a pannable, zoomable surface where a project's images are arranged.
 *
 * Without this script the board is a plain grid of cards. With it:
 *   - drag the background (or use the toolbar, or + / - / 0) to pan and zoom; the wheel zooms;
 *   - drag a card, or focus it and press the arrow keys (Shift for bigger steps), to move it;
 *   - cards without a saved place are laid out in one column per flow (a flow's steps top to
 *     bottom, the newest flow on the left) and each flow gets a labelled frame behind its cards;
 *   - the arrangement is saved (debounced) with PUT /api/v1/canvas, versioned with If-Match.
 *     A 412 means another tab saved first: the board says so and offers to reload or to keep
 *     this arrangement; it never overwrites silently.
 *
 * Markup (templates/studio/canvas.html):
 *   [data-board]                data-canvas-url, data-project-id, data-canvas-version,
 *                               data-canvas-state (JSON)
 *     [data-board-viewport]     the clipping, focusable area
 *       [data-board-surface]    transformed by pan/zoom
 *         [data-board-groups]   flow frames (drawn here)
 *         [data-board-items]    the cards: [data-board-item="<key>"] with data-flow-id,
 *                               data-flow-label, data-flow-url
 *     [data-board-zoom="in|out|fit|reset"], [data-board-zoom-level], [data-board-status],
 *     [data-board-conflict] with [data-board-reload], [data-board-keep]
 *
 * Positions are stored as {"items": {"<key>": {"x": 0, "y": 0}}}; the pan/zoom of a tab is
 * kept in localStorage, not on the server, so looking around never conflicts with other tabs.
 */
(function () {
  "use strict";

  var CARD_WIDTH = 240;
  var GAP = 24;
  var LANE_GAP = 56;
  var FRAME_PAD = 14;
  var FRAME_LABEL = 26;
  var MIN_ZOOM = 0.2;
  var MAX_ZOOM = 2.5;
  var READABLE_ZOOM = 0.7;
  var SAVE_DELAY_MS = 800;
  var DRAG_THRESHOLD = 4;
  var INTERACTIVE = "a, button, input, select, textarea, summary, label, details[open] > *:not(summary), [data-no-drag]";

  function clamp(value, min, max) {
    return Math.min(max, Math.max(min, value));
  }

  function csrfToken() {
    return window.Pictor ? window.Pictor.csrfToken() : "";
  }

  function toast(message, level) {
    if (window.Pictor) window.Pictor.toast(message, level);
  }

  function Board(root) {
    this.root = root;
    this.viewport = root.querySelector("[data-board-viewport]");
    this.surface = root.querySelector("[data-board-surface]");
    this.itemsEl = root.querySelector("[data-board-items]");
    this.groupsEl = root.querySelector("[data-board-groups]");
    this.statusEl = root.querySelector("[data-board-status]");
    this.zoomLevelEl = root.querySelector("[data-board-zoom-level]");
    this.conflictEl = root.querySelector("[data-board-conflict]");
    this.projectId = root.getAttribute("data-project-id");
    this.url = root.getAttribute("data-canvas-url");
    this.version = parseInt(root.getAttribute("data-canvas-version"), 10) || 0;
    this.state = this.parseState(root.getAttribute("data-canvas-state"));
    this.positions = this.state.items;
    this.placed = {};
    this.zTop = 1;
    this.saveTimer = null;
    this.saving = false;
    this.saveAgain = false;
    this.dirty = false;
    this.conflict = false;
    this.view = this.loadView();
    this.init();
  }

  Board.prototype.parseState = function (raw) {
    var state = {};
    try { state = JSON.parse(raw || "{}") || {}; } catch (e) { state = {}; }
    if (typeof state !== "object" || Array.isArray(state)) state = {};
    if (!state.items || typeof state.items !== "object") state.items = {};
    return state;
  };

  /* Setup -------------------------------------------------------------------------------- */

  Board.prototype.init = function () {
    var self = this;
    this.root.classList.add("is-enhanced");
    this.layoutAll();
    if (this.view) this.applyView();
    else this.fit(true);
    this.drawGroups();

    this.viewport.addEventListener("pointerdown", function (evt) { self.onPointerDown(evt); });
    this.viewport.addEventListener("wheel", function (evt) { self.onWheel(evt); }, { passive: false });
    this.viewport.addEventListener("keydown", function (evt) { self.onKeyDown(evt); });
    this.root.addEventListener("click", function (evt) { self.onClick(evt); });

    // Cards arrive (a new generation, an upload) and are replaced (polling, alias edits).
    document.addEventListener("htmx:load", function (evt) { self.onLoaded(evt.target); });
    new MutationObserver(function () { self.drawGroups(); }).observe(this.itemsEl, { childList: true });

    window.addEventListener("resize", function () { self.applyView(); });
    window.addEventListener("pagehide", function () { self.flush(); });
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "hidden") self.flush();
    });
  };

  Board.prototype.items = function () {
    return Array.prototype.slice.call(this.itemsEl.querySelectorAll("[data-board-item]"));
  };

  Board.prototype.keyOf = function (el) {
    return el.getAttribute("data-board-item");
  };

  /* Layout ------------------------------------------------------------------------------- */

  Board.prototype.size = function (el) {
    return { w: el.offsetWidth || CARD_WIDTH, h: el.offsetHeight || CARD_WIDTH };
  };

  Board.prototype.setPosition = function (el, pos) {
    this.placed[this.keyOf(el)] = { x: Math.round(pos.x), y: Math.round(pos.y) };
    el.style.transform = "translate(" + Math.round(pos.x) + "px, " + Math.round(pos.y) + "px)";
  };

  /* Where a card without a saved place goes: below its flow's cards, or, for a flow not on the
     board yet, in a new column left of everything (the newest flow is next to the prompt). */
  Board.prototype.autoPlace = function (el) {
    var flow = el.getAttribute("data-flow-id") || "";
    var self = this;
    var laneLeft = null;
    var laneBottom = null;
    var minX = null;
    var minY = null;
    this.items().forEach(function (other) {
      var pos = self.placed[self.keyOf(other)];
      if (other === el || !pos) return;
      var size = self.size(other);
      minX = minX === null ? pos.x : Math.min(minX, pos.x);
      minY = minY === null ? pos.y : Math.min(minY, pos.y);
      if ((other.getAttribute("data-flow-id") || "") === flow) {
        laneLeft = laneLeft === null ? pos.x : Math.min(laneLeft, pos.x);
        laneBottom = laneBottom === null ? pos.y + size.h : Math.max(laneBottom, pos.y + size.h);
      }
    });
    if (laneLeft !== null) return { x: laneLeft, y: laneBottom + GAP };
    if (minX === null) return { x: 0, y: 0 };
    return { x: minX - this.size(el).w - LANE_GAP, y: minY };
  };

  /* Saved places first, then the rest oldest first (the server lists newest first). */
  Board.prototype.layoutAll = function () {
    var self = this;
    var items = this.items();
    var pending = [];
    items.forEach(function (el) {
      var saved = self.positions[self.keyOf(el)];
      if (saved && isFinite(saved.x) && isFinite(saved.y)) self.setPosition(el, saved);
      else pending.push(el);
    });
    pending.reverse().forEach(function (el) { self.setPosition(el, self.autoPlace(el)); });
  };

  Board.prototype.onLoaded = function (el) {
    if (!el || !el.matches || !el.matches("[data-board-item]") || !this.itemsEl.contains(el)) return;
    var key = this.keyOf(el);
    var known = this.placed[key] || this.positions[key];
    if (known) {
      this.setPosition(el, known);
    } else {
      this.setPosition(el, this.autoPlace(el));
      this.reveal(el);
    }
    this.drawGroups();
  };

  /* Flow frames: the bounding box of each flow's cards, with a link to the flow. */
  Board.prototype.drawGroups = function () {
    if (!this.groupsEl) return;
    var self = this;
    var boxes = {};
    var order = [];
    this.items().forEach(function (el) {
      var flow = el.getAttribute("data-flow-id");
      var pos = self.placed[self.keyOf(el)];
      if (!flow || !pos) return;
      var size = self.size(el);
      var box = boxes[flow];
      if (!box) {
        box = boxes[flow] = { x1: pos.x, y1: pos.y, x2: pos.x + size.w, y2: pos.y + size.h, count: 0 };
        order.push(flow);
      }
      // Cards are listed newest first: the frame is named after the flow's first step.
      box.label = el.getAttribute("data-flow-label") || "Flow";
      box.url = el.getAttribute("data-flow-url");
      box.x1 = Math.min(box.x1, pos.x);
      box.y1 = Math.min(box.y1, pos.y);
      box.x2 = Math.max(box.x2, pos.x + size.w);
      box.y2 = Math.max(box.y2, pos.y + size.h);
      box.count += 1;
    });
    var existing = {};
    Array.prototype.forEach.call(this.groupsEl.children, function (frame) {
      existing[frame.getAttribute("data-flow-group")] = frame;
    });
    order.forEach(function (flow) {
      var box = boxes[flow];
      var frame = existing[flow];
      delete existing[flow];
      if (!frame) {
        frame = document.createElement("div");
        frame.className = "board__group";
        frame.setAttribute("data-flow-group", flow);
        var label = document.createElement(box.url ? "a" : "span");
        label.className = "board__group-label";
        if (box.url) label.href = box.url;
        frame.appendChild(label);
        self.groupsEl.appendChild(frame);
      }
      frame.firstChild.textContent = box.label + " · " + box.count + (box.count === 1 ? " image" : " images");
      frame.style.transform = "translate(" + (box.x1 - FRAME_PAD) + "px, " + (box.y1 - FRAME_PAD - FRAME_LABEL) + "px)";
      frame.style.width = (box.x2 - box.x1 + 2 * FRAME_PAD) + "px";
      frame.style.height = (box.y2 - box.y1 + 2 * FRAME_PAD + FRAME_LABEL) + "px";
    });
    Object.keys(existing).forEach(function (flow) { existing[flow].remove(); });
  };

  /* Pan and zoom ------------------------------------------------------------------------- */

  Board.prototype.viewKey = function () {
    return "pictor:canvas-view:" + this.projectId;
  };

  Board.prototype.loadView = function () {
    try {
      var view = JSON.parse(window.localStorage.getItem(this.viewKey()) || "null");
      if (view && isFinite(view.x) && isFinite(view.y) && isFinite(view.zoom)) {
        view.zoom = clamp(view.zoom, MIN_ZOOM, MAX_ZOOM);
        return view;
      }
    } catch (e) { /* storage unavailable */ }
    return null;
  };

  Board.prototype.applyView = function () {
    var v = this.view;
    this.surface.style.transform = "translate(" + v.x + "px, " + v.y + "px) scale(" + v.zoom + ")";
    if (this.zoomLevelEl) this.zoomLevelEl.textContent = Math.round(v.zoom * 100) + "%";
    try { window.localStorage.setItem(this.viewKey(), JSON.stringify(v)); } catch (e) { /* ignore */ }
  };

  Board.prototype.zoomAt = function (zoom, cx, cy) {
    var v = this.view;
    zoom = clamp(zoom, MIN_ZOOM, MAX_ZOOM);
    var wx = (cx - v.x) / v.zoom;
    var wy = (cy - v.y) / v.zoom;
    this.view = { x: cx - wx * zoom, y: cy - wy * zoom, zoom: zoom };
    this.applyView();
  };

  Board.prototype.zoomBy = function (factor) {
    this.zoomAt(this.view.zoom * factor, this.viewport.clientWidth / 2, this.viewport.clientHeight / 2);
  };

  Board.prototype.bounds = function (els) {
    var self = this;
    var box = null;
    els.forEach(function (el) {
      var pos = self.placed[self.keyOf(el)];
      if (!pos) return;
      var size = self.size(el);
      if (!box) box = { x1: pos.x, y1: pos.y, x2: pos.x + size.w, y2: pos.y + size.h };
      box.x1 = Math.min(box.x1, pos.x);
      box.y1 = Math.min(box.y1, pos.y - FRAME_LABEL);
      box.x2 = Math.max(box.x2, pos.x + size.w);
      box.y2 = Math.max(box.y2, pos.y + size.h);
    });
    return box;
  };

  /* Show every card. `readable` (the first visit) never zooms out below READABLE_ZOOM: a big
     board then opens at its top left corner instead, with the newest flow in view. */
  Board.prototype.fit = function (readable) {
    var box = this.bounds(this.items());
    var w = this.viewport.clientWidth || 800;
    var h = this.viewport.clientHeight || 600;
    var pad = 40;
    if (!box) {
      this.view = { x: pad, y: pad + FRAME_LABEL, zoom: 1 };
    } else {
      var zoom = clamp(Math.min((w - 2 * pad) / (box.x2 - box.x1), (h - 2 * pad) / (box.y2 - box.y1), 1), MIN_ZOOM, MAX_ZOOM);
      if (readable && zoom < READABLE_ZOOM) zoom = READABLE_ZOOM;
      var width = (box.x2 - box.x1) * zoom;
      var height = (box.y2 - box.y1) * zoom;
      this.view = {
        x: (width > w - 2 * pad ? pad : (w - width) / 2) - box.x1 * zoom,
        y: (height > h - 2 * pad ? pad : (h - height) / 2) - box.y1 * zoom,
        zoom: zoom
      };
    }
    this.applyView();
  };

  /* Pan just enough to show a card (a new generation lands where it can be seen). */
  Board.prototype.reveal = function (el) {
    var pos = this.placed[this.keyOf(el)];
    if (!pos) return;
    var v = this.view;
    var size = this.size(el);
    var margin = 32;
    var w = this.viewport.clientWidth;
    var h = this.viewport.clientHeight;
    var left = v.x + pos.x * v.zoom;
    var top = v.y + (pos.y - FRAME_LABEL) * v.zoom;
    var right = v.x + (pos.x + size.w) * v.zoom;
    var bottom = v.y + (pos.y + size.h) * v.zoom;
    var dx = 0;
    var dy = 0;
    if (left < margin) dx = margin - left;
    else if (right > w - margin) dx = Math.max(w - margin - right, margin - left);
    if (top < margin) dy = margin - top;
    else if (bottom > h - margin) dy = Math.max(h - margin - bottom, margin - top);
    if (dx || dy) {
      this.view = { x: v.x + dx, y: v.y + dy, zoom: v.zoom };
      this.applyView();
    }
  };

  Board.prototype.onWheel = function (evt) {
    evt.preventDefault();
    var rect = this.viewport.getBoundingClientRect();
    if (evt.ctrlKey || evt.metaKey || Math.abs(evt.deltaY) >= Math.abs(evt.deltaX)) {
      var factor = Math.exp(-evt.deltaY * (evt.deltaMode === 1 ? 0.05 : 0.0015));
      this.zoomAt(this.view.zoom * factor, evt.clientX - rect.left, evt.clientY - rect.top);
    } else {
      this.view = { x: this.view.x - evt.deltaX, y: this.view.y, zoom: this.view.zoom };
      this.applyView();
    }
  };

  /* Pointer: drag a card, or pan from the background ------------------------------------- */

  Board.prototype.onPointerDown = function (evt) {
    if (evt.button !== 0 || this.gesture) return;
    var item = evt.target.closest("[data-board-item]");
    if (item && evt.target.closest(INTERACTIVE) && item.contains(evt.target.closest(INTERACTIVE))) return;
    if (!item && evt.target.closest("a, button")) return;
    var self = this;
    var start = { x: evt.clientX, y: evt.clientY };
    var origin = item ? this.placed[this.keyOf(item)] : { x: this.view.x, y: this.view.y };
    if (!origin) return;
    this.gesture = { item: item, start: start, origin: { x: origin.x, y: origin.y }, moved: false, id: evt.pointerId };
    this.viewport.setPointerCapture(evt.pointerId);

    function move(e) {
      var g = self.gesture;
      if (!g || e.pointerId !== g.id) return;
      var dx = e.clientX - g.start.x;
      var dy = e.clientY - g.start.y;
      if (!g.moved && Math.abs(dx) + Math.abs(dy) < DRAG_THRESHOLD) return;
      if (!g.moved) {
        g.moved = true;
        self.root.classList.add(g.item ? "is-dragging-item" : "is-panning");
        if (g.item) {
          g.item.classList.add("is-dragging");
          g.item.style.zIndex = String(++self.zTop);
        }
      }
      if (g.item) {
        self.setPosition(g.item, { x: g.origin.x + dx / self.view.zoom, y: g.origin.y + dy / self.view.zoom });
        self.drawGroups();
      } else {
        self.view = { x: g.origin.x + dx, y: g.origin.y + dy, zoom: self.view.zoom };
        self.applyView();
      }
    }

    function end(e) {
      var g = self.gesture;
      if (!g || e.pointerId !== g.id) return;
      self.viewport.removeEventListener("pointermove", move);
      self.viewport.removeEventListener("pointerup", end);
      self.viewport.removeEventListener("pointercancel", end);
      self.root.classList.remove("is-dragging-item", "is-panning");
      if (g.item) g.item.classList.remove("is-dragging");
      if (g.moved) {
        // A drag is not a click on whatever is under the pointer when it ends.
        self.suppressClick = true;
        setTimeout(function () { self.suppressClick = false; }, 0);
        if (g.item) self.changed();
      }
      self.gesture = null;
    }

    this.viewport.addEventListener("pointermove", move);
    this.viewport.addEventListener("pointerup", end);
    this.viewport.addEventListener("pointercancel", end);
  };

  Board.prototype.onClick = function (evt) {
    if (this.suppressClick) {
      evt.preventDefault();
      evt.stopPropagation();
      return;
    }
    var zoom = evt.target.closest("[data-board-zoom]");
    if (zoom) {
      var what = zoom.getAttribute("data-board-zoom");
      if (what === "in") this.zoomBy(1.25);
      else if (what === "out") this.zoomBy(0.8);
      else if (what === "reset") this.zoomAt(1, this.viewport.clientWidth / 2, this.viewport.clientHeight / 2);
      else this.fit(false);
      return;
    }
    if (evt.target.closest("[data-board-reload]")) {
      window.location.reload();
      return;
    }
    if (evt.target.closest("[data-board-keep]")) this.keepMine();
  };

  /* Keyboard: arrows move the focused card; + - 0 zoom; arrows on the background pan. */
  Board.prototype.onKeyDown = function (evt) {
    if (evt.target.closest("input, textarea, select, [contenteditable]")) return;
    var item = evt.target.matches("[data-board-item]") ? evt.target : null;
    var step = evt.shiftKey ? 50 : 10;
    var moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (moves[evt.key]) {
      var d = moves[evt.key];
      evt.preventDefault();
      if (item) {
        var pos = this.placed[this.keyOf(item)];
        this.setPosition(item, { x: pos.x + d[0] * step, y: pos.y + d[1] * step });
        this.drawGroups();
        this.reveal(item);
        this.changed();
      } else if (evt.target === this.viewport) {
        this.view = { x: this.view.x - d[0] * step * 2, y: this.view.y - d[1] * step * 2, zoom: this.view.zoom };
        this.applyView();
      }
      return;
    }
    if (evt.ctrlKey || evt.metaKey || evt.altKey) return;
    if (evt.key === "+" || evt.key === "=") { evt.preventDefault(); this.zoomBy(1.25); }
    else if (evt.key === "-" || evt.key === "_") { evt.preventDefault(); this.zoomBy(0.8); }
    else if (evt.key === "0") { evt.preventDefault(); this.fit(false); }
  };

  /* Saving ------------------------------------------------------------------------------- */

  Board.prototype.setStatus = function (text, kind) {
    if (!this.statusEl) return;
    this.statusEl.textContent = text;
    this.statusEl.setAttribute("data-state", kind || "");
  };

  Board.prototype.currentState = function () {
    var self = this;
    var items = {};
    this.items().forEach(function (el) {
      var key = self.keyOf(el);
      if (self.placed[key]) items[key] = self.placed[key];
    });
    var state = {};
    Object.keys(this.state).forEach(function (k) { state[k] = self.state[k]; });
    state.items = items;
    return state;
  };

  Board.prototype.changed = function () {
    if (this.conflict) return;
    this.dirty = true;
    this.setStatus("Unsaved changes", "dirty");
    clearTimeout(this.saveTimer);
    var self = this;
    this.saveTimer = setTimeout(function () { self.save(); }, SAVE_DELAY_MS);
  };

  Board.prototype.request = function (method, body, keepalive) {
    var headers = {
      "Accept": "application/json",
      "X-Project-Id": this.projectId,
      "X-CSRFToken": csrfToken()
    };
    if (method === "PUT") {
      headers["Content-Type"] = "application/json";
      headers["If-Match"] = '"' + this.version + '"';
    }
    return fetch(this.url, {
      method: method,
      credentials: "same-origin",
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      keepalive: !!keepalive
    });
  };

  Board.prototype.save = function () {
    clearTimeout(this.saveTimer);
    if (this.conflict || !this.dirty) return;
    if (this.saving) {
      this.saveAgain = true;
      return;
    }
    var self = this;
    this.saving = true;
    this.dirty = false;
    this.setStatus("Saving…", "saving");
    this.request("PUT", { state: this.currentState() })
      .then(function (response) {
        if (response.status === 412) {
          self.showConflict();
          return null;
        }
        return response.json().then(function (body) {
          if (!response.ok) {
            var message = body && body.error && body.error.message;
            throw new Error(message || "The arrangement could not be saved (" + response.status + ")");
          }
          self.acceptVersion(response, body);
          self.setStatus("Saved", "saved");
          return null;
        });
      })
      .catch(function (error) {
        self.dirty = true;
        self.setStatus("Not saved", "error");
        toast(error && error.message ? error.message : "The arrangement could not be saved", "error");
      })
      .then(function () {
        self.saving = false;
        if (self.saveAgain && !self.conflict) {
          self.saveAgain = false;
          self.save();
        }
      });
  };

  Board.prototype.acceptVersion = function (response, body) {
    var data = body && body.data;
    if (data && isFinite(data.version)) {
      this.version = data.version;
    } else {
      var etag = (response.headers.get("ETag") || "").replace(/\D/g, "");
      if (etag) this.version = parseInt(etag, 10);
    }
    this.root.setAttribute("data-canvas-version", String(this.version));
  };

  /* Leaving the page with a pending save: send it now (keepalive outlives the page). */
  Board.prototype.flush = function () {
    if (!this.dirty || this.conflict || this.saving) return;
    clearTimeout(this.saveTimer);
    this.dirty = false;
    this.request("PUT", { state: this.currentState() }, true).catch(function () { /* best effort */ });
  };

  Board.prototype.showConflict = function () {
    this.conflict = true;
    this.dirty = true;
    this.setStatus("Not saved: changed elsewhere", "error");
    if (this.conflictEl) {
      this.conflictEl.hidden = false;
      var focusable = this.conflictEl.querySelector("button");
      if (focusable) focusable.focus();
    }
  };

  /* The person chose to keep this tab's arrangement: save it over the newer version. */
  Board.prototype.keepMine = function () {
    var self = this;
    this.request("GET")
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) throw new Error("Could not load the current canvas");
          self.acceptVersion(response, body);
        });
      })
      .then(function () {
        self.conflict = false;
        if (self.conflictEl) self.conflictEl.hidden = true;
        self.dirty = true;
        self.save();
      })
      .catch(function (error) { toast(error.message, "error"); });
  };

  function start() {
    var root = document.querySelector("[data-board]");
    if (root && !root.pictorBoard) root.pictorBoard = new Board(root);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
