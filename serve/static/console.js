// framesift console: drives the public HTTP API only (same routes as curl would use).
// No build step and no dependencies. Paths are relative to <base href> (the app's route prefix).
// Server-Sent Events are read with fetch() and a stream reader: EventSource cannot send the
// Authorization header.
"use strict";

(() => {
  const $ = (selector, root = document) => root.querySelector(selector);
  const SVG = "http://www.w3.org/2000/svg";
  const KEY_ITEM = "framesift.apiKey";
  const FINAL = new Set(["succeeded", "failed", "cancelled"]);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const fmt = {
    num: (v, digits = 2) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(digits)),
    pct: (v) => `${fmt.num(v, 1)}%`,
    secs(v) {
      if (v === null || v === undefined) return "–";
      if (v < 60) return `${v.toFixed(v < 10 ? 1 : 0)} s`;
      return `${Math.floor(v / 60)} min ${Math.round(v % 60)} s`;
    },
    time(iso) {
      if (!iso) return "–";
      const d = new Date(iso);
      return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
    },
  };

  // ---- notices ---------------------------------------------------------------------------------

  function notify(message, kind = "error") {
    const box = $("#notice");
    box.textContent = message;
    box.className = `notice ${kind === "info" ? "info" : ""}`;
    box.hidden = false;
  }

  function clearNotice() {
    $("#notice").hidden = true;
  }

  // ---- API key ---------------------------------------------------------------------------------

  const auth = { key: null, remembered: false, needed: false };

  function loadRememberedKey() {
    try {
      const stored = window.localStorage.getItem(KEY_ITEM);
      if (stored) {
        auth.key = stored;
        auth.remembered = true;
      }
    } catch (err) {
      /* storage disabled: nothing remembered */
    }
  }

  function setKey(key, remember) {
    auth.key = key || null;
    auth.remembered = Boolean(key && remember);
    try {
      if (auth.remembered) window.localStorage.setItem(KEY_ITEM, key);
      else window.localStorage.removeItem(KEY_ITEM);
    } catch (err) {
      /* storage disabled */
    }
    showKeyState();
  }

  function showKeyState() {
    let text = "";
    if (auth.key) text = auth.remembered ? "API key set (remembered)" : "API key set (this tab only)";
    else if (auth.needed) text = "API key needed";
    $("#key-state").textContent = text;
  }

  function askForKey(message) {
    auth.needed = true;
    showKeyState();
    $("#auth-message").textContent = message;
    $("#auth").hidden = false;
    $("#auth-key").focus();
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function authHeaders(extra) {
    const headers = new Headers(extra || {});
    if (auth.key) headers.set("Authorization", `Bearer ${auth.key}`);
    return headers;
  }

  async function errorFrom(response) {
    let code = `http_${response.status}`;
    let message = response.statusText || `HTTP ${response.status}`;
    try {
      const body = await response.json();
      if (body && body.error) ({ code, message } = body.error);
    } catch (err) {
      /* not JSON: keep the status line */
    }
    return unauthorized(new ApiError(response.status, code, message));
  }

  function unauthorized(error) {
    if (error.status === 401) {
      askForKey(auth.key
        ? "The server refused this API key (401 unauthorized). Check the key and enter it again."
        : "This server needs an API key (401 unauthorized). Enter it to continue.");
    }
    return error;
  }

  async function api(path, options = {}) {
    const response = await fetch(path, {
      method: options.method || "GET",
      body: options.body,
      headers: authHeaders(options.headers),
      signal: options.signal,
      cache: "no-store",
    });
    if (!response.ok) throw await errorFrom(response);
    return response;
  }

  const apiJson = async (path, options) => (await api(path, options)).json();

  function describe(error) {
    if (error instanceof ApiError) return `${error.message} (${error.code})`;
    return `could not reach the server: ${error.message || error}`;
  }

  // ---- Server-Sent Events over fetch ----------------------------------------------------------

  async function* sseEvents(response) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let event = "message";
    let data = [];
    let id = null;
    const dispatch = () => {
      const out = data.length ? { event, id, data: parseData(data.join("\n")) } : null;
      event = "message";
      data = [];
      return out;
    };
    for (;;) {
      const { value, done } = await reader.read();
      if (value) buffer += value;
      for (;;) {
        const match = /\r\n|\r|\n/.exec(buffer);
        if (!match) break;
        if (match[0] === "\r" && match.index === buffer.length - 1 && !done) break; // maybe \r\n
        const line = buffer.slice(0, match.index);
        buffer = buffer.slice(match.index + match[0].length);
        if (line === "") {
          const out = dispatch();
          if (out) yield out;
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let text = colon < 0 ? "" : line.slice(colon + 1);
          if (text.startsWith(" ")) text = text.slice(1);
          if (field === "event") event = text;
          else if (field === "data") data.push(text);
          else if (field === "id") id = text;
        }
      }
      if (done) {
        const out = dispatch();
        if (out) yield out;
        return;
      }
    }
  }

  function parseData(text) {
    try {
      return JSON.parse(text);
    } catch (err) {
      return text;
    }
  }

  // ---- object URLs (images fetched with the key) ----------------------------------------------

  const objectUrls = new Set();

  async function imageUrl(path) {
    const blob = await (await api(path)).blob();
    const url = URL.createObjectURL(blob);
    objectUrls.add(url);
    return url;
  }

  function dropObjectUrls() {
    for (const url of objectUrls) URL.revokeObjectURL(url);
    objectUrls.clear();
  }

  // ---- the analysis being watched -------------------------------------------------------------

  let current = null; // the AnalysisPanel shown

  class AnalysisPanel {
    constructor(id) {
      this.id = id;
      this.base = `v1/analyses/${encodeURIComponent(id)}`;
      this.abort = new AbortController();
      this.frames = new Map(); // frame_index -> {frame, card}
      this.status = null;
      this.finished = false;
      this.scores = null;
      this.imagesLoaded = false;
      this.reset();
    }

    reset() {
      dropObjectUrls();
      $("#analysis").hidden = false;
      $("#a-scan").textContent = "";
      $("#a-id").textContent = `id ${this.id}`;
      $("#a-status").textContent = "";  // not the previous analysis's status while this one loads
      $("#a-status").className = "badge";
      $("#a-queue").textContent = "";
      $("#a-params").textContent = "";
      $("#a-error").hidden = true;
      $("#a-selection").hidden = true;
      $("#a-plan").hidden = true;
      $("#a-plot-block").hidden = true;
      $("#a-plot").replaceChildren();
      $("#a-frames").replaceChildren(el("p", { class: "muted empty", text: "none yet: they appear here as they are picked" }));
      $("#a-cancel").hidden = true;
      $("#a-cancel").disabled = false;
      $("#a-repick").hidden = true;
      $("#r-picks").replaceChildren();
      $("#r-summary").textContent = "";
      this.setProgress({ current: 0, total: 0, percentage: 0 }, null);
      for (const row of document.querySelectorAll("#recent-table tbody tr")) {
        row.classList.toggle("selected", row.dataset.id === this.id);
      }
    }

    stop() {
      this.abort.abort();
      if (this.previewing) this.previewing.abort();
      clearTimeout(this.previewTimer);
    }

    async follow() {
      let failures = 0;
      while (!this.finished && !this.abort.signal.aborted) {
        try {
          const response = await api(`${this.base}/events`, { signal: this.abort.signal });
          failures = 0;
          for await (const message of sseEvents(response)) {
            if (this.abort.signal.aborted) return;
            this.handle(message.event, message.data);
            if (message.event === "done" || message.event === "error") {
              this.finished = true;
              break;
            }
          }
        } catch (err) {
          if (this.abort.signal.aborted) return;
          if (err instanceof ApiError && err.status !== 503) {
            this.showError(describe(err));
            return;
          }
          failures += 1;
          if (failures > 20) {
            this.showError(`lost the event stream: ${describe(err)}`);
            return;
          }
        }
        if (!this.finished) await sleep(1000); // the stream ended early: reconnect, state catches up
      }
    }

    handle(event, data) {
      switch (event) {
        case "state":
          this.showView(data);
          for (const frame of data.golden_frames || []) this.addFrame(frame);
          break;
        case "status":
          this.setStatus(data.status);
          if (data.status === "queued") this.pollQueue();
          break;
        case "planned":
          this.showPlan(data);
          break;
        case "progress":
          this.setProgress(data, data.eta_s);
          break;
        case "golden_frame":
          this.addFrame(data);
          break;
        case "done":
          this.showView(data);
          this.finish(data);
          break;
        case "error":
          this.showView(data);
          if (!this.frames.size) {
            $("#a-frames").replaceChildren(el("p", { class: "muted empty", text: `no golden frames: the analysis ${data.status === "cancelled" ? "was cancelled" : "failed"}` }));
          }
          refreshRecent();
          break;
        default:
          break;
      }
    }

    showView(view) {
      this.view = view;
      $("#a-scan").textContent = view.scan_id;
      const p = view.parameters || {};
      $("#a-params").textContent = `· top K ${p.top_k ?? "–"} · min gap ${p.min_gap_s ?? "–"} s · motion max ${p.motion_max ?? "–"} px`;
      this.setStatus(view.status, view.queue_position);
      if (view.progress) this.setProgress(view.progress, view.eta_s);
      if (view.result && view.result.plan) this.showPlan({ total: view.result.video?.frame_count, video: view.result.video, plan: view.result.plan });
      if (view.error) this.showError(`${view.error.message} (${view.error.code})`);
      if (view.status === "queued") this.pollQueue();
    }

    setStatus(status, queuePosition) {
      this.status = status;
      const badge = $("#a-status");
      badge.textContent = status;
      badge.className = `badge ${status}`;
      $("#a-cancel").hidden = FINAL.has(status);
      if (status === "queued") {
        if (queuePosition !== undefined) {
          $("#a-queue").textContent = queuePosition ? `· queue position ${queuePosition}` : "· queued";
        }
      } else {
        $("#a-queue").textContent = "";
      }
      const bar = $("#a-progress");
      bar.classList.toggle("done", status === "succeeded");
      bar.classList.toggle("failed", status === "failed" || status === "cancelled");
    }

    async pollQueue() {
      if (this.polling) return;
      this.polling = true;
      try {
        while (this.status === "queued" && !this.abort.signal.aborted) {
          await sleep(2000);
          if (this.status !== "queued" || this.abort.signal.aborted) break;
          try {
            const view = await apiJson(this.base, { signal: this.abort.signal });
            if (this.status === "queued") this.setStatus(view.status, view.queue_position);
          } catch (err) {
            if (this.abort.signal.aborted || (err instanceof ApiError && err.status === 401)) break;
          }
        }
      } finally {
        this.polling = false;
      }
    }

    setProgress(progress, eta) {
      const pct = Math.max(0, Math.min(100, progress.percentage || 0));
      const bar = $("#a-progress");
      bar.setAttribute("aria-valuenow", String(pct));
      $(".fill", bar).style.width = `${pct}%`;
      const parts = [`${progress.current} / ${progress.total} frames`, fmt.pct(pct)];
      if (eta !== null && eta !== undefined && pct < 100) parts.push(`ETA ${fmt.secs(eta)}`);
      $("#a-progress-text").textContent = progress.total ? parts.join(" · ") : "waiting for the chunk plan…";
    }

    showPlan({ total, video, plan }) {
      if (!plan) return;
      const chunks = $("#a-chunks");
      chunks.replaceChildren();
      const frames = plan.frame_count || total || 1;
      plan.chunks.forEach(([start, stop], i) => {
        const chunk = el("div", { class: "chunk", title: `chunk ${i + 1}: frames ${start}–${stop - 1}`, text: `${start}–${stop - 1}` });
        chunk.style.flexGrow = String(Math.max(1, stop - start) / frames);
        chunk.style.flexBasis = "0";
        chunks.append(chunk);
      });
      const v = video || {};
      const size = v.width ? `${v.width}×${v.height}` : "";
      const fps = v.fps ? ` at ${fmt.num(v.fps, 2)} fps` : "";
      $("#a-plan-text").textContent =
        `${frames} frames ${size}${fps} · ${plural(plan.chunks.length, "chunk")} on ` +
        `${plural(plan.parallel_workers, "worker")} (est. ${fmt.secs(plan.est_wall_s)}) · ${plan.reason}`;
      $("#a-plan").hidden = false;
    }

    showError(text) {
      const box = $("#a-error");
      box.textContent = text;
      box.hidden = false;
    }

    addFrame(frame) {
      const known = this.frames.get(frame.frame_index);
      if (known) {
        known.frame = frame;
        return;
      }
      const grid = $("#a-frames");
      const empty = $(".empty", grid);
      if (empty) empty.remove();
      const thumb = el("div", { class: "thumb", text: "image stored when the analysis finishes" });
      const metrics = el("dl", { class: "metrics" });
      const card = el("figure", { class: "frame-card", tabindex: "0", "data-frame-index": frame.frame_index, "data-rank": frame.rank },
        thumb,
        el("figcaption", {},
          el("strong", { text: `#${frame.rank}` }), ` · frame ${frame.frame_index} · ${fmt.num(frame.time_s, 2)} s`,
          metrics));
      fillMetrics(metrics, frame, false);
      card.addEventListener("click", () => this.openFrame(frame.frame_index));
      card.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") this.openFrame(frame.frame_index);
      });
      // keep the cards in rank order
      const after = [...grid.children].find((c) => Number(c.dataset.rank) > frame.rank);
      grid.insertBefore(card, after || null);
      this.frames.set(frame.frame_index, { frame, card });
      if (this.status === "succeeded") this.loadImage(frame.frame_index);
    }

    async loadImage(frameIndex) {
      const entry = this.frames.get(frameIndex);
      if (!entry || entry.url) return entry && entry.url;
      try {
        entry.url = imageUrl(`${this.base}/frames/${frameIndex}`);
        const url = await entry.url;
        const img = el("img", { alt: `golden frame ${frameIndex}`, src: url });
        $(".thumb", entry.card).replaceChildren(img);
        return url;
      } catch (err) {
        entry.url = null;
        $(".thumb", entry.card).textContent = `image unavailable: ${describe(err)}`;
        return null;
      }
    }

    async finish(view) {
      const result = view.result || {};
      for (const frame of result.golden_frames || []) this.addFrame(frame);
      const sel = result.selection;
      if (sel) {
        const notes = (sel.notes || []).join("; ");
        $("#a-selection").textContent =
          `${sel.picked} picked from ${sel.still_frames} still frames` +
          (sel.relaxed ? ` (threshold relaxed to ${fmt.num(sel.motion_max_used, 2)} px)` : "") +
          (notes ? ` · ${notes}` : "");
        $("#a-selection").hidden = false;
      }
      if (!this.frames.size) {
        $("#a-frames").replaceChildren(el("p", { class: "muted empty", text: "no frames were picked" }));
      }
      await Promise.all([...this.frames.keys()].map((i) => this.loadImage(i)));
      try {
        this.scores = await apiJson(`${this.base}/scores`, { signal: this.abort.signal });
        $("#a-plot").replaceChildren(plotScores(this.scores, null));
        $("#a-plot-block").hidden = false;
        if (this.status === "succeeded") this.showRepick(view.parameters || {});
      } catch (err) {
        if (!this.abort.signal.aborted) this.showError(`scores unavailable: ${describe(err)}`);
      }
      refreshRecent();
    }

    // ---- re-pick: sliders -> preview (debounced) -> Apply starts a re-pick analysis ----------

    repickInputs() {
      return [["#r-top-k", "top_k"], ["#r-min-gap", "min_gap_s"], ["#r-motion-max", "motion_max"]];
    }

    showRepick(params) {
      this.repickFrom = params;
      for (const [id, name] of this.repickInputs()) {
        const input = $(id);
        if (params[name] !== undefined && params[name] !== null) {
          input.max = String(Math.max(Number(input.max), params[name]));
          input.value = String(params[name]);
        }
        $(`${id}-value`).textContent = input.value;
        input.oninput = () => {
          $(`${id}-value`).textContent = input.value;
          clearTimeout(this.previewTimer);
          this.previewTimer = setTimeout(() => this.previewRepick(), 150);
        };
      }
      $("#r-apply").disabled = true;
      $("#r-apply").onclick = () => this.applyRepick();
      $("#a-repick").hidden = false;
    }

    repickParams() {
      return Object.fromEntries(this.repickInputs().map(([id, name]) => [name, Number($(id).value)]));
    }

    async previewRepick() {
      if (this.previewing) this.previewing.abort(); // only the latest position counts
      const controller = new AbortController();
      this.previewing = controller;
      const params = this.repickParams();
      const query = new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)]));
      try {
        const preview = await apiJson(`${this.base}/preview?${query}`, { signal: controller.signal });
        if (controller.signal.aborted) return;
        this.showPreview(preview);
        $("#r-apply").disabled = this.repickInputs().every(([, name]) => params[name] === this.repickFrom[name]);
      } catch (err) {
        if (!controller.signal.aborted) $("#r-summary").textContent = `no preview: ${describe(err)}`;
      }
    }

    showPreview(preview) {
      const f = this.scores.frames;
      const spans = preview.still_spans;
      const still = (i) => {
        let lo = 0, hi = spans.length - 1; // spans are sorted and disjoint
        while (lo <= hi) {
          const mid = (lo + hi) >> 1;
          if (i < spans[mid][0]) hi = mid - 1;
          else if (i >= spans[mid][1]) lo = mid + 1;
          else return true;
        }
        return false;
      };
      const picked = new Set(preview.picks.map((p) => p.frame_index));
      const scores = {
        ...this.scores, motion_max: preview.motion_max,
        motion_max_used: preview.motion_max_used ?? preview.motion_max, picks: preview.picks,
        frames: { ...f, still: f.frame_index.map(still), picked: f.frame_index.map((i) => picked.has(i)) },
      };
      $("#a-plot").replaceChildren(plotScores(scores, null));
      const fresh = preview.picks.filter((p) => !p.stored).length;
      $("#r-summary").textContent =
        `${plural(preview.picks.length, "pick")} from ${preview.still_frames} still frames · ` +
        `${fresh} to decode` + (preview.notes.length ? ` · ${preview.notes.join("; ")}` : "");
      $("#r-picks").replaceChildren(...preview.picks.map((p) => el("li", {
        class: p.stored ? "stored" : "new", "data-frame-index": p.frame_index, "data-stored": String(p.stored),
        text: `#${p.rank} · frame ${p.frame_index} · ${fmt.num(p.time_s, 2)} s${p.stored ? "" : " · new"}`,
      })));
    }

    async applyRepick() {
      $("#r-apply").disabled = true;
      try {
        const accepted = await apiJson(`${this.base}/repick`, {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify(this.repickParams()),
        });
        openAnalysis(accepted.id);
        refreshRecent();
      } catch (err) {
        $("#r-apply").disabled = false;
        notify(`could not start the re-pick: ${describe(err)}`);
      }
    }

    async openFrame(frameIndex) {
      const entry = this.frames.get(frameIndex);
      if (!entry) return;
      const { frame } = entry;
      const dialog = $("#frame-dialog");
      $("#d-title").textContent = `#${frame.rank} · frame ${frame.frame_index} · ${fmt.num(frame.time_s, 3)} s`;
      fillMetrics($("#d-metrics"), frame, true);
      const img = $("#d-image");
      img.removeAttribute("src");
      $("#d-plot").replaceChildren(el("p", { class: "muted", text: this.status === "succeeded" ? "loading the scores…" : "the plot is drawn when the analysis has finished" }));
      if (!dialog.open) dialog.showModal();
      if (this.status !== "succeeded") return;
      const url = await this.loadImage(frameIndex);
      if (url) img.src = url;
      try {
        this.scores = this.scores || await apiJson(`${this.base}/scores`);
        $("#d-plot").replaceChildren(plotScores(this.scores, frameIndex));
      } catch (err) {
        $("#d-plot").replaceChildren(el("p", { class: "error", text: `scores unavailable: ${describe(err)}` }));
      }
    }

    async cancel() {
      $("#a-cancel").disabled = true;
      try {
        const view = await apiJson(this.base, { method: "DELETE" });
        this.showView(view);
      } catch (err) {
        notify(`could not cancel: ${describe(err)}`);
      } finally {
        $("#a-cancel").disabled = false;
        refreshRecent();
      }
    }
  }

  function fillMetrics(dl, frame, full) {
    const rows = [
      ["sharpness", fmt.num(frame.sharpness, 1)],
      ["motion", `${fmt.num(frame.motion, 3)} px`],
      ["glint", frame.glint ? `${fmt.num(100 * frame.glint.share, 2)}% · ${plural(frame.glint.blob_count, "blob")}` : "–"],
    ];
    if (full) {
      rows.push(["time", `${fmt.num(frame.time_s, 3)} s`], ["size", `${frame.width}×${frame.height}`],
        ["still", frame.still ? "yes" : "no (threshold relaxed)"], ["key", frame.key]);
      if (frame.glint && frame.glint.largest_blob_area_px) {
        rows.push(["largest glint", `${frame.glint.largest_blob_area_px} px (${fmt.num(100 * frame.glint.largest_blob_share, 2)}%)`]);
      }
    }
    dl.replaceChildren(...rows.flatMap(([name, value]) => [el("dt", { text: name }), el("dd", { text: value, "data-metric": name })]));
  }

  function openAnalysis(id) {
    if (current) current.stop();
    current = new AnalysisPanel(id);
    current.follow();
    return current;
  }

  // ---- the plot (SVG) --------------------------------------------------------------------------

  function plotScores(scores, highlight) {
    const W = 900;
    const H = 330;
    const left = 64;
    const right = 16;
    const top1 = 22;
    const h1 = 130;
    const top2 = top1 + h1 + 44;
    const h2 = 90;
    const f = scores.frames;
    const n = f.frame_index.length;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "scores-plot", role: "img",
      "aria-label": `sharpness and motion of ${scores.frame_count} frames`, "data-points": n });
    if (!n) {
      root.append(svg("text", { x: left, y: 40 }, "no frames were scored"));
      return root;
    }
    const times = f.time_s.map((t, i) => (t === null ? f.frame_index[i] : t));
    const t0 = Math.min(...times);
    const t1 = Math.max(...times, t0 + 1e-6);
    const x = (t) => left + ((t - t0) / (t1 - t0)) * (W - left - right);
    const finite = (arr) => arr.filter((v) => v !== null && Number.isFinite(v));
    const sharp = finite(f.sharpness);
    const sMax = Math.max(1e-6, ...sharp);
    const threshold = scores.motion_max_used ?? scores.motion_max;
    const motions = finite(f.motion).sort((a, b) => a - b);
    const p95 = motions.length ? motions[Math.floor(0.95 * (motions.length - 1))] : 0;
    const mMax = Math.max(threshold * 2.5, p95 * 1.1, 1e-6);
    const y1 = (v) => top1 + h1 - (v / sMax) * h1;
    const y2 = (v) => top2 + h2 - (Math.min(v, mMax) / mMax) * h2;

    // still spans (motion <= threshold), shaded behind both panels
    let start = null;
    for (let i = 0; i <= n; i += 1) {
      const still = i < n && f.still[i];
      if (still && start === null) start = i;
      if (!still && start !== null) {
        const xa = x(times[start]);
        const xb = x(times[Math.max(start, i - 1)]);
        for (const [top, h] of [[top1, h1], [top2, h2]]) {
          root.append(svg("rect", { class: "still", x: xa, y: top, width: Math.max(1, xb - xa), height: h }));
        }
        start = null;
      }
    }
    // axes and labels
    for (const [top, h, label, max, unit] of [[top1, h1, "sharpness (Laplacian variance)", sMax, ""], [top2, h2, "motion (px/frame)", mMax, " px"]]) {
      root.append(svg("line", { class: "axis", x1: left, y1: top + h, x2: W - right, y2: top + h }));
      root.append(svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: top + h }));
      root.append(svg("text", { x: left, y: top - 6 }, label));
      root.append(svg("text", { x: left - 6, y: top + 4, "text-anchor": "end" }, `${fmt.num(max, max < 10 ? 2 : 0)}${unit}`));
      root.append(svg("text", { x: left - 6, y: top + h + 4, "text-anchor": "end" }, "0"));
    }
    const span = t1 - t0;
    const step = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600].find((s) => span / s <= 10) || 1200;
    for (let t = Math.ceil(t0 / step) * step; t <= t1 + 1e-9; t += step) {
      root.append(svg("line", { class: "grid-line", x1: x(t), y1: top2 + h2, x2: x(t), y2: top2 + h2 + 4 }));
      root.append(svg("text", { x: x(t), y: top2 + h2 + 16, "text-anchor": "middle" }, `${Number(t.toFixed(2))} s`));
    }
    // series
    const line = (values, y, cls) => {
      const pts = [];
      values.forEach((v, i) => {
        if (v !== null && Number.isFinite(v)) pts.push(`${x(times[i]).toFixed(1)},${y(v).toFixed(1)}`);
      });
      root.append(svg("polyline", { class: cls, points: pts.join(" "), "data-points": pts.length }));
    };
    line(f.sharpness, y1, "sharpness");
    line(f.motion, y2, "motion");
    // stillness threshold
    root.append(svg("line", { class: "threshold", x1: left, y1: y2(threshold), x2: W - right, y2: y2(threshold) }));
    root.append(svg("text", { class: "threshold-label", x: W - right, y: y2(threshold) - 4, "text-anchor": "end" },
      `still ≤ ${fmt.num(threshold, 2)} px${scores.motion_max_used && scores.motion_max_used !== scores.motion_max ? " (relaxed)" : ""}`));
    // picks
    for (const pick of scores.picks) {
      const cls = pick.frame_index === highlight ? " current" : "";
      const px = x(pick.time_s);
      root.append(svg("line", { class: `pick${cls}`, x1: px, y1: top1, x2: px, y2: top2 + h2 }));
      root.append(svg("circle", { class: `pick-dot${cls}`, cx: px, cy: y1(pick.sharpness), r: cls ? 5 : 3.5, "data-frame-index": pick.frame_index }));
      root.append(svg("text", { x: px + 4, y: top1 + 10 }, `#${pick.rank}`));
    }
    if (scores.stride > 1) {
      root.append(svg("text", { x: W - right, y: H - 4, "text-anchor": "end" }, `every ${scores.stride}th of ${scores.frame_count} frames shown`));
    }
    return root;
  }

  // ---- start an analysis ------------------------------------------------------------------------

  function scanIdFrom(name) {
    const stem = name.replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[-._]+|[-._]+$/g, "");
    return stem.replace(/\.\./g, ".").slice(0, 128) || "scan";
  }

  function sourceKind() {
    return $("input[name=source]:checked").value;
  }

  function uploadWithProgress(form) {
    // XMLHttpRequest: fetch() cannot report upload progress
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "v1/analyses");
      if (auth.key) xhr.setRequestHeader("Authorization", `Bearer ${auth.key}`);
      xhr.responseType = "json";
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) $("#upload-state").textContent = `uploading ${Math.round((100 * e.loaded) / e.total)}%`;
      });
      xhr.addEventListener("load", () => {
        const body = xhr.response;
        if (xhr.status >= 200 && xhr.status < 300) resolve(body);
        else {
          const e = body && body.error ? body.error : { code: `http_${xhr.status}`, message: xhr.statusText || `HTTP ${xhr.status}` };
          reject(unauthorized(new ApiError(xhr.status, e.code, e.message)));
        }
      });
      xhr.addEventListener("error", () => reject(new Error("the upload failed (network error)")));
      xhr.send(form);
    });
  }

  async function startAnalysis(event) {
    event.preventDefault();
    clearNotice();
    const scanInput = $("#scan-id");
    const file = $("#video-file").files[0];
    if (!scanInput.value && file) scanInput.value = scanIdFrom(file.name);
    if (!scanInput.checkValidity() || !scanInput.value) {
      notify("the scan id must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit");
      return;
    }
    const fields = { scan_id: scanInput.value };
    for (const [id, name] of [["#top-k", "top_k"], ["#min-gap", "min_gap_s"], ["#motion-max", "motion_max"]]) {
      const input = $(id);
      if (!input.checkValidity()) {
        notify(`${name} is out of range`);
        return;
      }
      if (input.value !== "") fields[name] = Number(input.value);
    }
    const button = $("#start-button");
    button.disabled = true;
    try {
      let accepted;
      if (sourceKind() === "file") {
        if (!file) throw new Error("choose a video file to upload");
        const form = new FormData();
        form.append("video", file, file.name);
        for (const [name, value] of Object.entries(fields)) form.append(name, String(value));
        accepted = await uploadWithProgress(form);
      } else {
        const url = $("#video-url").value.trim();
        if (!url) throw new Error("enter the video's http(s) URL");
        accepted = await apiJson("v1/analyses", {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ video_url: url, ...fields }),
        });
      }
      $("#upload-state").textContent = "";
      if (!accepted.created) notify("The same scan with the same video and parameters is already queued or running: showing that analysis.", "info");
      openAnalysis(accepted.id);
      refreshRecent();
    } catch (err) {
      $("#upload-state").textContent = "";
      notify(err instanceof ApiError ? `could not start the analysis: ${describe(err)}` : err.message);
    } finally {
      button.disabled = false;
    }
  }

  // ---- recent analyses --------------------------------------------------------------------------

  let refreshing = null;
  let refreshAgain = false;

  function refreshRecent() {
    // one listing at a time; a refresh asked for meanwhile runs once the current one is done
    if (refreshing) {
      refreshAgain = true;
      return refreshing;
    }
    refreshing = loadRecent().finally(() => {
      refreshing = null;
      if (refreshAgain) {
        refreshAgain = false;
        refreshRecent();
      }
    });
    return refreshing;
  }

  async function loadRecent() {
    let list;
    try {
      list = (await apiJson("v1/analyses?limit=20")).analyses;
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return "unauthorized";
      notify(`could not list the analyses: ${describe(err)}`);
      return "error";
    }
    const body = $("#recent-table tbody");
    body.replaceChildren(...list.map((a) => {
      const actions = el("td", {},
        el("button", { type: "button", class: "link", text: "open", onclick: () => openAnalysis(a.id) }));
      if (!FINAL.has(a.status)) {
        actions.append(" ", el("button", { type: "button", class: "link cancel", text: "cancel",
          onclick: async () => {
            try {
              await apiJson(`v1/analyses/${encodeURIComponent(a.id)}`, { method: "DELETE" });
            } catch (err) {
              notify(`could not cancel: ${describe(err)}`);
            }
            refreshRecent();
          } }));
      }
      const status = a.status === "queued" && a.queue_position ? `queued (#${a.queue_position})` : a.status;
      return el("tr", { "data-id": a.id, "data-status": a.status, class: current && current.id === a.id ? "selected" : "" },
        el("td", { text: a.scan_id }),
        el("td", {}, el("span", { class: `badge ${a.status}`, text: status })),
        el("td", { text: fmt.pct(a.progress.percentage) }),
        el("td", { text: fmt.time(a.timings.created_at) }),
        el("td", { text: FINAL.has(a.status) && a.timings.run_s !== null && a.timings.run_s !== undefined ? fmt.secs(Math.max(0, a.timings.run_s)) : "–" }),
        actions);
    }));
    $("#recent-empty").hidden = list.length > 0;
    return "ok";
  }

  // ---- image batch ------------------------------------------------------------------------------

  let chosenImages = [];

  function chooseImages(files) {
    chosenImages = [...files];
    $("#drop-count").textContent = chosenImages.length ? `${plural(chosenImages.length, "image")} chosen` : "";
    $("#images-button").disabled = chosenImages.length === 0;
  }

  function describeImage(r) {
    const parts = [`${r.width}×${r.height} ${String(r.format || "").toUpperCase()}`, `sharpness ${fmt.num(r.sharpness, 1)}`,
      `exposure ${fmt.num(r.exposure_mean, 1)}`,
      `clipped ${fmt.pct(100 * r.clipped_dark_share)} dark / ${fmt.pct(100 * r.clipped_bright_share)} bright`];
    if (r.glint) parts.push(`glint ${fmt.pct(100 * r.glint.share)} · ${plural(r.glint.blob_count, "blob")}`);
    if (r.detections) parts.push(`${r.detections.length} detections`);
    return parts.join(" · ");
  }

  async function analyseImages(event) {
    event.preventDefault();
    clearNotice();
    const files = chosenImages;
    if (!files.length) return;
    const button = $("#images-button");
    button.disabled = true;
    const list = $("#b-list");
    const bar = $("#b-progress");
    bar.classList.remove("done", "failed");
    bar.setAttribute("aria-valuenow", "0");
    $(".fill", bar).style.width = "0";
    $("#b-counts").textContent = `0 / ${files.length}`;
    $("#b-summary").textContent = "";
    for (const img of list.querySelectorAll("img")) URL.revokeObjectURL(img.src);
    const rows = files.map((file, index) => {
      const preview = el("img", { alt: "" });
      preview.addEventListener("error", () => preview.removeAttribute("src"));
      preview.src = URL.createObjectURL(file);
      return el("li", { class: "image-row pending", "data-index": index }, preview,
        el("span", { class: "name", text: file.name }), el("span", { class: "outcome", text: "waiting…" }));
    });
    list.replaceChildren(...rows);
    $("#batch").hidden = false;
    const form = new FormData();
    for (const file of files) form.append("images", file, file.name);
    const concurrency = $("#image-concurrency").value;
    const query = concurrency ? `?concurrency=${encodeURIComponent(concurrency)}` : "";
    try {
      const response = await api(`v1/images/analyze${query}`, { method: "POST", body: form });
      for await (const { event: kind, data } of sseEvents(response)) {
        const row = rows[data.index];
        if (kind === "result" && row) {
          row.className = "image-row ok";
          $(".outcome", row).textContent = describeImage(data);
        } else if (kind === "error" && row) {
          row.className = "image-row error";
          $(".outcome", row).textContent = `${data.message} (${data.code})`;
        } else if (kind === "progress") {
          bar.setAttribute("aria-valuenow", String(data.percentage));
          $(".fill", bar).style.width = `${data.percentage}%`;
          $("#b-counts").textContent = `${data.current} / ${data.total} · analysed ${data.analyzed} · failed ${data.failed}`;
        } else if (kind === "summary") {
          bar.classList.add("done");
          $("#b-summary").textContent = `· done in ${fmt.secs(data.elapsed_s)} (images took ${fmt.secs(data.sum_item_s)} in all, ${fmt.num(data.speedup, 2)}× with ${data.concurrency} at once)`;
        }
      }
    } catch (err) {
      bar.classList.add("failed");
      notify(`the image batch failed: ${describe(err)}`);
      for (const row of rows) {
        if (row.classList.contains("pending")) $(".outcome", row).textContent = "not analysed";
      }
    } finally {
      button.disabled = false;
    }
  }

  // ---- wiring -----------------------------------------------------------------------------------

  function init() {
    loadRememberedKey();
    showKeyState();
    $("#key-change").addEventListener("click", () => askForKey("Enter the API key for this server."));
    $("#auth-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const key = $("#auth-key").value.trim();
      if (!key) return;
      setKey(key, $("#auth-remember").checked);
      $("#auth-key").value = "";
      clearNotice();
      if (refreshing) await refreshing; // a listing sent before the key: let it finish first
      const outcome = await loadRecent();
      if (outcome === "ok") {
        $("#auth").hidden = true;
        auth.needed = true;
        showKeyState();
        if (current && !current.finished) openAnalysis(current.id);
      } else if (outcome === "unauthorized") {
        setKey(null, false); // refused: forget it (the message says so)
      }
    });
    $("#auth-forget").addEventListener("click", () => {
      setKey(null, false);
      askForKey("Key forgotten. Enter a key to continue.");
    });
    for (const radio of document.querySelectorAll("input[name=source]")) {
      radio.addEventListener("change", () => {
        const file = sourceKind() === "file";
        $("#video-file-label").hidden = !file;
        $("#video-url-label").hidden = file;
      });
    }
    $("#video-file").addEventListener("change", () => {
      const file = $("#video-file").files[0];
      if (file && !$("#scan-id").value) $("#scan-id").value = scanIdFrom(file.name);
    });
    $("#start-form").addEventListener("submit", startAnalysis);
    $("#a-cancel").addEventListener("click", () => current && current.cancel());
    $("#recent-refresh").addEventListener("click", refreshRecent);
    $("#d-close").addEventListener("click", () => $("#frame-dialog").close());
    $("#image-files").addEventListener("change", (e) => chooseImages(e.target.files));
    const drop = $("#drop");
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      chooseImages([...e.dataTransfer.files].filter((f) => !f.type || f.type.startsWith("image/")));
    });
    $("#images-form").addEventListener("submit", analyseImages);
    refreshRecent();
    setInterval(() => {
      if (!document.hidden && !($("#auth").hidden === false && !auth.key)) refreshRecent();
    }, 5000);
  }

  document.addEventListener("DOMContentLoaded", init);
})();
