// dfocus focal-plane page: controls -> WebSocket -> ui node; previews, progress and errors back.
"use strict";

const $ = (id) => document.getElementById(id);
const FRAME_PREVIEW = 1;
const SLIDER_MAX = 1000;
const FNUM_MIN = 1.0, FNUM_MAX = 22.0;
const DEFAULT_RANGE = [0.3, 10.0];  // metres, until a depth map gives the scene's own range

const state = {
  ws: null,
  retryMs: 500,
  scene: null,            // scene info from the server (see server.scene_info)
  followLatest: true,
  depth: null,            // Float32Array of the current scene's depth, row-major
  range: DEFAULT_RANGE,
  focusFromMask: false,   // painted: focus comes from the painted depths until a slider moves
  hasPaint: false,
  painting: false,
  rendering: false,
  previewUrl: null,
  resultUrl: null,
  previewFrames: 0,
  plane: null,
  sendQueued: false,
  lastMaskSend: 0,
  loads: 0,
  reqSent: 0,    // controls messages sent
  masksSent: 0,  // mask messages sent (counted when a send is decided, before the async PNG encoding)
};

// ---------- log-scale sliders ----------
function toMetres(pos, range) {
  const [lo, hi] = range;
  return lo * Math.pow(hi / lo, pos / SLIDER_MAX);
}
function toPos(metres, range) {
  const [lo, hi] = range;
  const t = Math.log(Math.max(metres, 1e-6) / lo) / Math.log(hi / lo);
  return Math.round(Math.min(1, Math.max(0, t)) * SLIDER_MAX);
}
function fmtM(m) {
  if (m === null || m === undefined || !isFinite(m)) return "∞";
  return m < 10 ? `${m.toFixed(2)} m` : `${m.toFixed(1)} m`;
}
function fNumber() {
  const pos = Number($("fnum").value);
  if (pos === 0) return 0;  // the camera's own aperture
  return FNUM_MIN * Math.pow(FNUM_MAX / FNUM_MIN, pos / SLIDER_MAX);
}

// ---------- messages ----------
// `key` names a condition that a later event may clear (clearBanner) once it no longer holds.
function showBanner(text, kind = "error", key = "") {
  $("banner").dataset.key = key;
  $("banner-text").textContent = text;
  $("banner").className = kind === "info" ? "info" : "";
  $("banner").hidden = false;
}
function clearBanner(key) {
  if ($("banner").dataset.key === key) $("banner").hidden = true;
}
$("banner-close").onclick = () => { $("banner").hidden = true; };

function send(obj) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(obj));
    return true;
  }
  showBanner("Not connected to the ui node: the request was not sent. Reconnecting…");
  return false;
}

function controls() {
  const manual = $("dof-manual").checked;
  const tone = {};
  for (const el of document.querySelectorAll("input.tone")) tone[el.id] = Number(el.value);
  return {
    sequence_id: state.followLatest || !state.scene ? 0 : state.scene.sequence_id,
    focus_m: state.focusFromMask && state.hasPaint ? 0 : toMetres(Number($("focus").value), state.range),
    near_m: manual ? toMetres(Number($("near").value), state.range) : 0,
    far_m: manual ? toMetres(Number($("far").value), state.range) : 0,
    f_number: fNumber(),
    bokeh_strength: Number($("bokeh").value),
    tone,
  };
}

// Coalesce bursts of input events into one request per event-loop turn (a timer, not
// requestAnimationFrame: frames stop in hidden tabs and can starve under load).
function sendControls() {
  const resultView = document.querySelector("input[name=view][value=result]");
  if (resultView.checked) {  // a control moved: show the live preview again
    document.querySelector("input[name=view][value=preview]").checked = true;
    updateBase();
  }
  if (state.sendQueued) return;
  state.sendQueued = true;
  setTimeout(() => {
    state.sendQueued = false;
    state.reqSent += 1;
    send({ op: "controls", req: state.reqSent, ...controls() });
  }, 0);
}

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}${location.pathname.replace(/[^/]*$/, "")}ws`);
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  ws.onopen = () => {
    state.retryMs = 500;
    $("link").textContent = "connected";
    $("link").className = "link up";
    clearBanner("link");
    // A new connection is a new session on the server: counters restart, the mask must be sent again.
    state.reqSent = 0;
    state.masksSent = 0;
    send({ op: "sequences" });
    if (state.hasPaint) sendMask(true);
  };
  ws.onclose = () => {
    $("link").textContent = "offline";
    $("link").className = "link down";
    if (state.rendering) renderEnded("The connection to the ui node dropped during the render.");
    showBanner("Lost the connection to the ui node. Reconnecting…", "error", "link");
    setTimeout(connect, state.retryMs);
    state.retryMs = Math.min(5000, state.retryMs * 2);
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") onMessage(JSON.parse(ev.data));
    else onFrame(new Uint8Array(ev.data));
  };
}

function onFrame(bytes) {
  if (bytes[0] !== FRAME_PREVIEW) return;
  const url = URL.createObjectURL(new Blob([bytes.subarray(1)], { type: "image/jpeg" }));
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = url;
  state.previewFrames += 1;
  $("base").dataset.previewFrames = String(state.previewFrames);
  updateBase();
}

function onMessage(m) {
  switch (m.type) {
    case "hello":
      if (m.scene) loadScene(m.scene);
      break;
    case "scene":
      if (!state.scene || (state.followLatest && m.latest) || m.sequence_id === state.scene.sequence_id) loadScene(m);
      send({ op: "sequences" });
      break;
    case "plane": showPlane(m); break;
    case "preview_failed": showBanner(m.message); break;
    case "render_progress":
      $("render-progress").value = m.progress;
      $("render-status").textContent = `${m.stage} (${Math.round(m.progress * 100)} %)`;
      break;
    case "render_done": renderDone(m); break;
    case "render_failed":
      renderEnded(m.message);
      if (!m.cancelled) showBanner(m.message);
      break;
    case "capture_progress": captureProgress(m); break;
    case "capture_done":
      captureEnded(`Captured sequence ${m.sequence_id}. ${m.message || ""}`);
      state.followLatest = true;
      $("sequence").value = "0";
      break;
    case "capture_failed":
      captureEnded("Capture failed.");
      showBanner(m.message);
      break;
    case "sequences": fillSequences(m.items, m.warning); break;
    case "error": showBanner(m.message); break;
  }
}

// ---------- scene ----------
async function loadScene(info) {
  const changedSize = !state.scene || state.scene.width !== info.width || state.scene.height !== info.height;
  const newSequence = !state.scene || state.scene.sequence_id !== info.sequence_id;
  state.scene = info;
  $("stage").classList.remove("empty");
  const paint = $("paint");
  if (changedSize || newSequence) {
    paint.width = info.width;
    paint.height = info.height;
    state.hasPaint = false;
    state.focusFromMask = false;
    state.previewUrl = null;
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {  // drop the old mask
      state.masksSent += 1;
      state.ws.send(new ArrayBuffer(0));
    }
  }
  $("base").dataset.sequence = String(info.sequence_id);
  if (newSequence) $("readout").textContent = "Depth under cursor: –";
  updateBase();
  setDownload("dl-npy", info.depth_npy_url);
  setDownload("dl-png16", info.depth_png_url);
  setDownload("dl-ply", info.ply_url);
  const load = ++state.loads;  // a newer scene message makes this load stale
  $("stage").dataset.depthLoaded = "0";
  if (info.has_depth) {
    const keepFocus = state.depth ? toMetres(Number($("focus").value), state.range) : null;
    let depth = null;
    try {
      const res = await fetch(info.depth_raw_url, { cache: "no-store", signal: AbortSignal.timeout(10000) });
      if (!res.ok) throw new Error(await res.text());
      depth = new Float32Array(await res.arrayBuffer());
    } catch (e) {
      showBanner(`The depth map could not be loaded (${e.message}); the read-out is off.`);
    }
    if (load !== state.loads) return;
    state.depth = depth;
    state.range = [info.depth_min_m, info.depth_max_m];
    $("overlay").src = `${info.overlay_url}?s=${info.stamp_ns}`;
    $("overlay").hidden = !$("overlay-on").checked;
    drawColorbar(info);
    $("focus").value = String(keepFocus === null ? SLIDER_MAX / 2 : toPos(keepFocus, state.range));
    $("stage").dataset.depthLoaded = depth ? "1" : "0";
    clearBanner("depth");
  } else {
    $("overlay").hidden = true;
    $("overlay").removeAttribute("src");
    state.depth = null;
    $("colorbar-box").hidden = true;
    showBanner(`Sequence ${info.sequence_id} has no depth map yet (is the depth node running?).`, "info", "depth");
  }
  refreshOutputs();
  sendControls();
}

function updateBase() {
  const view = document.querySelector("input[name=view]:checked").value;
  const img = $("base");
  let src = state.scene ? `${state.scene.reference_url}?s=${state.scene.stamp_ns}` : "";
  if (view === "preview" && state.previewUrl) src = state.previewUrl;
  if (view === "result" && state.resultUrl) src = state.resultUrl;
  if (src && img.getAttribute("src") !== src) img.src = src;
  img.dataset.view = view;
}

function drawColorbar(info) {
  const stops = info.colormap.map((c, i) => `rgb(${c.join(",")}) ${(100 * i) / (info.colormap.length - 1)}%`);
  $("colorbar").style.background = `linear-gradient(to right, ${stops.join(",")})`;
  const ticks = $("ticks");
  ticks.replaceChildren();
  const [lo, hi] = [info.depth_min_m, info.depth_max_m];
  for (const v of niceTicks(lo, hi)) {
    const span = document.createElement("span");
    span.style.left = `${(100 * Math.log(v / lo)) / Math.log(hi / lo)}%`;
    span.textContent = v >= 1 ? `${+v.toFixed(1)}` : `${+v.toFixed(2)}`;
    ticks.appendChild(span);
  }
  $("colorbar-box").hidden = false;
}

function niceTicks(lo, hi) {
  const out = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * Math.pow(10, e);
      if (v >= lo && v <= hi) out.push(v);
    }
  }
  // Label both ends too, unless a round value sits right next to them.
  const near = (a, b) => Math.abs(Math.log(a / b)) < 0.12 * Math.log(hi / lo);
  return [lo, ...out.filter((v) => !near(v, lo) && !near(v, hi)), hi];
}

function setDownload(id, url) {
  const a = $(id);
  if (url) { a.href = url; a.classList.remove("disabled"); }
  else { a.removeAttribute("href"); a.classList.add("disabled"); }
}

// ---------- focal plane ----------
function showPlane(m) {
  state.plane = m;
  const el = $("range");
  // "synced": this answers the latest controls and mask (tests and scripts wait for it).
  el.dataset.synced = m.req === state.reqSent && m.masks === state.masksSent ? "1" : "0";
  if (!m.ok) {
    el.textContent = m.message;
    el.className = "range bad";
    el.dataset.ok = "0";
    return;
  }
  const how = m.from_mask ? "from painting" : m.hard ? "set by hand" : "lens depth of field";
  el.textContent = `Sharp: ${fmtM(m.near_m)} – ${fmtM(m.far_m)}, focus ${fmtM(m.focus_m)} (${how})`;
  el.className = "range";
  Object.assign(el.dataset, { ok: "1", near: m.near_m, far: m.far_m ?? "inf", focus: m.focus_m,
    fromMask: m.from_mask ? "1" : "0" });
  if (!$("dof-manual").checked) {  // the disabled near/far sliders show the lens depth of field
    $("near").value = String(toPos(m.near_m, state.range));
    $("far").value = String(toPos(m.far_m ?? state.range[1], state.range));
  }
  if (m.from_mask && state.focusFromMask) {
    // Show where the painting put the plane without sending it back as a slider move.
    $("focus").value = String(toPos(m.focus_m, state.range));
    $("near").value = String(toPos(m.near_m, state.range));
    $("far").value = String(toPos(m.far_m ?? state.range[1], state.range));
  }
  refreshOutputs();
}

function refreshOutputs() {
  $("focus-out").textContent = fmtM(toMetres(Number($("focus").value), state.range));
  $("near-out").textContent = fmtM(toMetres(Number($("near").value), state.range));
  $("far-out").textContent = fmtM(toMetres(Number($("far").value), state.range));
  const f = fNumber();
  $("fnum-out").textContent = f === 0
    ? `camera f/${state.scene ? state.scene.camera_f_number.toFixed(1) : "?"}` : `f/${f.toFixed(1)}`;
  $("bokeh-out").textContent = `${Number($("bokeh").value).toFixed(2)}×`;
  $("brush-out").textContent = `${$("brush").value} px`;
  $("overlay-opacity-out").textContent = `${$("overlay-opacity").value} %`;
  for (const el of document.querySelectorAll("input.tone")) {
    el.nextElementSibling.textContent = el.id === "exposure_ev" ? `${Number(el.value).toFixed(1)} EV`
      : Number(el.value).toFixed(2);
  }
}

function onFocusInput() {
  state.focusFromMask = false;
  const focus = Number($("focus").value);
  // Keep near <= focus <= far while the focus moves.
  if (Number($("near").value) > focus) $("near").value = String(focus);
  if (Number($("far").value) < focus) $("far").value = String(focus);
  refreshOutputs();
  sendControls();
}
$("focus").addEventListener("input", onFocusInput);
$("near").addEventListener("input", () => {
  state.focusFromMask = false;
  if (Number($("near").value) > Number($("focus").value)) $("focus").value = $("near").value;
  if (Number($("far").value) < Number($("near").value)) $("far").value = $("near").value;
  refreshOutputs(); sendControls();
});
$("far").addEventListener("input", () => {
  state.focusFromMask = false;
  if (Number($("far").value) < Number($("focus").value)) $("focus").value = $("far").value;
  if (Number($("near").value) > Number($("far").value)) $("near").value = $("far").value;
  refreshOutputs(); sendControls();
});
$("dof-manual").addEventListener("change", () => {
  const manual = $("dof-manual").checked;
  $("near").disabled = !manual;
  $("far").disabled = !manual;
  if (manual && state.plane && state.plane.ok) {
    $("near").value = String(toPos(state.plane.near_m, state.range));
    $("far").value = String(toPos(state.plane.far_m ?? state.range[1], state.range));
  }
  refreshOutputs(); sendControls();
});
for (const id of ["fnum", "bokeh"]) $(id).addEventListener("input", () => { refreshOutputs(); sendControls(); });
for (const el of document.querySelectorAll("input.tone")) {
  el.addEventListener("input", () => { refreshOutputs(); sendControls(); });
}
$("reset-tone").onclick = () => {
  for (const el of document.querySelectorAll("input.tone")) el.value = el.defaultValue;
  $("fnum").value = "0";
  $("bokeh").value = "1";
  refreshOutputs(); sendControls();
};

// ---------- view, overlay, read-out ----------
for (const r of document.querySelectorAll("input[name=view]")) r.addEventListener("change", updateBase);
$("overlay-on").addEventListener("change", () => { $("overlay").hidden = !$("overlay-on").checked || !state.depth; });
$("overlay-opacity").addEventListener("input", () => {
  $("overlay").style.opacity = String(Number($("overlay-opacity").value) / 100);
  refreshOutputs();
});
$("overlay").style.opacity = "0.45";

function imagePoint(ev) {
  const rect = $("paint").getBoundingClientRect();
  return [((ev.clientX - rect.left) / rect.width) * state.scene.width,
    ((ev.clientY - rect.top) / rect.height) * state.scene.height];
}

function depthAt(x, y) {
  const s = state.scene;
  if (!state.depth || !s.has_depth) return null;
  const u = Math.floor((x / s.width) * s.depth_width), v = Math.floor((y / s.height) * s.depth_height);
  if (u < 0 || v < 0 || u >= s.depth_width || v >= s.depth_height) return null;
  return state.depth[v * s.depth_width + u];
}

$("stage").addEventListener("pointermove", (ev) => {
  if (!state.scene) return;
  const [x, y] = imagePoint(ev);
  const z = depthAt(x, y);
  const where = `(${Math.floor(x)}, ${Math.floor(y)})`;
  $("readout").textContent = z === null ? `Depth under cursor: no depth map ${where}`
    : isNaN(z) ? `Depth under cursor: invalid ${where}` : `Depth under cursor: ${z.toFixed(3)} m ${where}`;
});

// ---------- painting ----------
function tool() { return document.querySelector("input[name=tool]:checked").value; }
for (const r of document.querySelectorAll("input[name=tool]")) {
  r.addEventListener("change", () => $("stage").classList.toggle("painting", tool() !== "none"));
}
$("brush").addEventListener("input", refreshOutputs);

function stroke(from, to) {
  const ctx = $("paint").getContext("2d");
  ctx.globalCompositeOperation = tool() === "eraser" ? "destination-out" : "source-over";
  ctx.strokeStyle = "rgb(255, 64, 200)";
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  // Brush size is in screen pixels: convert to image pixels.
  ctx.lineWidth = (Number($("brush").value) * state.scene.width) / $("paint").getBoundingClientRect().width;
  ctx.beginPath();
  ctx.moveTo(from[0], from[1]);
  ctx.lineTo(to[0], to[1]);
  ctx.stroke();
}

function paintedAnything() {
  const c = $("paint");
  const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
  return false;
}

function sendMask(final) {
  const now = performance.now();
  if (!final && now - state.lastMaskSend < 150) return;  // a few updates per second while painting
  state.lastMaskSend = now;
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return;
  state.masksSent += 1;
  $("range").dataset.synced = "0";
  if (final) state.hasPaint = paintedAnything();
  if (!state.hasPaint && final) {
    state.ws.send(new ArrayBuffer(0));
    sendControls();
    return;
  }
  $("paint").toBlob((blob) => {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(blob || new ArrayBuffer(0));  // send something: the count of masks must match
      sendControls();
    }
  }, "image/png");
}

let last = null;
$("paint").addEventListener("pointerdown", (ev) => {
  if (tool() === "none" || !state.scene) return;
  $("paint").setPointerCapture(ev.pointerId);
  last = imagePoint(ev);
  if (tool() === "brush") { state.focusFromMask = true; state.hasPaint = true; }
  stroke(last, last);
});
$("paint").addEventListener("pointermove", (ev) => {
  if (last === null) return;
  const p = imagePoint(ev);
  stroke(last, p);
  last = p;
  sendMask(false);
});
const endStroke = () => {
  if (last === null) return;
  last = null;
  sendMask(true);
};
$("paint").addEventListener("pointerup", endStroke);
$("paint").addEventListener("pointercancel", endStroke);
$("clear-paint").onclick = () => {
  const c = $("paint");
  c.getContext("2d").clearRect(0, 0, c.width, c.height);
  state.focusFromMask = false;
  state.hasPaint = false;
  sendMask(true);
};

// ---------- render ----------
$("render").onclick = () => {
  if (!send({ op: "render", ...controls() })) return;
  state.rendering = true;
  $("render").disabled = true;
  $("cancel").disabled = false;
  $("render-progress").value = 0;
  $("render-status").textContent = "Starting…";
};
$("cancel").onclick = () => {
  send({ op: "cancel" });
  $("render-status").textContent = "Cancelling…";
};

function renderEnded(text) {
  state.rendering = false;
  $("render").disabled = false;
  $("cancel").disabled = true;
  $("render-status").textContent = text;
}

function renderDone(m) {
  renderEnded(`Rendered ${m.width}×${m.height} of sequence ${m.sequence_id}: sharp ${fmtM(m.near_m)} – ` +
    `${fmtM(m.far_m)}, focus ${fmtM(m.focus_m)}.`);
  $("render-progress").value = 1;
  state.resultUrl = m.url;
  setDownload("dl-result", m.url);
  $("dl-result").setAttribute("download", m.url.split("/").pop());
  const resultView = document.querySelector("input[name=view][value=result]");
  resultView.disabled = false;
  resultView.checked = true;
  updateBase();
}

// ---------- capture and sequences ----------
$("capture").onclick = () => {
  const shots = Number($("shots").value);
  if (!send({ op: "capture", num_shots: shots, focus_mode: Number($("focus-mode").value) })) return;
  $("capture").disabled = true;
  $("capture-progress").hidden = false;
  $("capture-progress").value = 0;
  $("capture-status").textContent = "Starting…";
};
function captureProgress(m) {
  $("capture-progress").value = m.progress;
  const shot = m.shot_index >= 0 ? `shot ${m.shot_index + 1}/${m.num_shots}: ` : "";
  $("capture-status").textContent = `${shot}${m.stage}`;
}
function captureEnded(text) {
  $("capture").disabled = false;
  $("capture-progress").hidden = true;
  $("capture-status").textContent = text;
}

function fillSequences(items, warning) {
  const sel = $("sequence");
  const chosen = sel.value;
  sel.replaceChildren(new Option("latest", "0"));
  for (const it of items.slice().reverse()) {
    const time = new Date(it.stamp_ns / 1e6).toLocaleTimeString();
    const notes = [it.has_depth ? "" : "no depth", it.local ? "" : "image not held by the page"].filter(Boolean);
    const opt = new Option(`#${it.sequence_id}  ${time}${notes.length ? "  (" + notes.join(", ") + ")" : ""}`,
      String(it.sequence_id));
    opt.disabled = !it.local;
    sel.appendChild(opt);
  }
  sel.value = [...sel.options].some((o) => o.value === chosen) ? chosen : "0";
  if (warning) showBanner(warning);
}
$("sequence").addEventListener("focus", () => send({ op: "sequences" }));
$("sequence").addEventListener("change", async () => {
  const id = Number($("sequence").value);
  state.followLatest = id === 0;
  try {
    const res = await fetch(id === 0 ? "api/state" : `api/scene/${id}/info`,
      { cache: "no-store", signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(await res.text());
    const body = await res.json();
    const info = id === 0 ? body.scene : body;
    if (info) loadScene(info);
  } catch (e) {
    showBanner(`Could not open sequence ${id}: ${e.message}`);
  }
});

refreshOutputs();
connect();
