// changeseg web page: pick or drop two images and see what changed, either on the server (POST them
// to v1/detect) or on this device (the exported model runs in the browser with onnxruntime-web, see
// ondevice.js; the images never leave the device). Served by `changeseg serve` (data-mode="server"),
// or as a static folder written by `changeseg export --web` (data-mode="static": on-device only).
// Plain JavaScript, no build step and no external resources.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const KEY_STORE = "changeseg-api-key";
  const WHERE_STORE = "changeseg-where";
  const staticMode = document.body.dataset.mode === "static";
  // Debugging knobs of the on-device mode: ?ep=wasm|webgpu|auto, ?threads=N, ?tile=PIXELS.
  const params = new URLSearchParams(location.search);
  const state = { files: { reference: null, comparison: null }, urls: {}, maxUpload: null, lastResult: null,
    apiKey: sessionStorage.getItem(KEY_STORE), where: staticMode ? "device" : "server",
    onDevice: { available: staticMode, manifest: null, session: null, loading: null, lastMask: null },
    decoded: {}, runs: 0, domains: [] };
  // Exposed for scripted checks (the browser test reads the last JSON answer from here).
  window.changeseg = state;

  function setStatus(kind, text) {
    const status = $("status");
    status.dataset.state = kind;
    status.textContent = text;
  }

  function objectUrl(key, blob) {
    if (state.urls[key]) URL.revokeObjectURL(state.urls[key]);
    state.urls[key] = URL.createObjectURL(blob);
    return state.urls[key];
  }

  function setFile(which, file) {
    if (!file) return;
    state.files[which] = file;
    delete state.decoded[which];
    $(which + "-name").textContent = file.name + " (" + formatBytes(file.size) + ")";
    const thumb = $(which + "-thumb");
    thumb.src = objectUrl(which, file);
    thumb.hidden = false;
    thumb.onerror = () => { thumb.hidden = true; };  // e.g. TIFF: the server reads it, the browser cannot
    $(which + "-drop").classList.add("ready");
    const both = state.files.reference && state.files.comparison;
    $("detect").disabled = !both;
    if (both) detect();
    else setStatus("idle", "Now choose the " + (state.files.reference ? "comparison" : "reference") + " image.");
  }

  function formatBytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1024 / 1024).toFixed(1) + " MiB";
  }

  function wireDrop(which) {
    const zone = $(which + "-drop");
    const input = $(which + "-input");
    input.addEventListener("change", () => setFile(which, input.files[0]));
    ["dragenter", "dragover"].forEach((name) => zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("dragover");
    }));
    ["dragleave", "drop"].forEach((name) => zone.addEventListener(name, () => zone.classList.remove("dragover")));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      const file = event.dataTransfer.files[0];
      if (file) setFile(which, file);
    });
  }

  // API calls carry the key when the user gave one; a 401 or 403 asks for it (again).
  async function apiFetch(url, options) {
    const headers = new Headers((options && options.headers) || {});
    if (state.apiKey) headers.set("Authorization", "Bearer " + state.apiKey);
    const response = await fetch(url, { ...options, headers });
    if (response.status === 401 || response.status === 403) {
      askForKey(response.status === 401 ? "This server needs an API key." : "The API key was not accepted.");
    }
    return response;
  }

  function askForKey(message) {
    state.apiKey = null;
    sessionStorage.removeItem(KEY_STORE);
    $("auth-message").textContent = message;
    $("auth").hidden = false;
    $("api-key").focus();
  }

  function useKey(event) {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) return;
    state.apiKey = key;
    sessionStorage.setItem(KEY_STORE, key);  // this tab only, sent only to this server
    $("api-key").value = "";
    $("auth").hidden = true;
    loadModelInfo();
    if (state.files.reference && state.files.comparison) detect();
  }

  async function errorMessage(response) {
    try {
      const body = await response.json();
      if (typeof body.detail === "string") return body.detail;
      return JSON.stringify(body.detail);
    } catch (e) {
      return response.status + " " + response.statusText;
    }
  }

  function detect() {
    return state.where === "device" ? detectOnDevice() : detectOnServer();
  }

  async function detectOnServer() {
    const { reference, comparison } = state.files;
    if (!reference || !comparison) return;
    if (state.maxUpload && reference.size + comparison.size > state.maxUpload) {
      setStatus("error", "The two files together are " + formatBytes(reference.size + comparison.size) +
        "; this server accepts at most " + formatBytes(state.maxUpload) + ".");
      return;
    }
    const form = new FormData();
    form.append("reference", reference);
    form.append("comparison", comparison);
    // Resized or aligned pairs: show the comparison as the model saw it, not the file as picked.
    const transformed = $("resize").checked || $("align").checked;
    form.append("return", transformed ? "mask,overlay,comparison" : "mask,overlay");
    const threshold = $("threshold").value.trim();
    if (threshold !== "") form.append("threshold", threshold);
    const minArea = $("min-area").value.trim();
    if (minArea !== "") form.append("min_area", minArea);
    form.append("resize", $("resize").checked ? "true" : "false");
    if ($("align").checked) form.append("align", "true");
    const domain = $("domain").value;
    if (domain !== "") form.append("domain", domain);
    $("detect").disabled = true;
    setStatus("working", "Detecting changes…");
    const started = performance.now();
    try {
      const response = await apiFetch("v1/detect", { method: "POST", body: form });
      if (!response.ok) {
        setStatus("error", "Error " + response.status + ": " + (await errorMessage(response)));
        return;
      }
      const result = await response.json();
      state.lastResult = result;
      const images = result.images;
      await show(result, { overlay: pngBlob(images.overlay), mask: pngBlob(images.mask),
        comparison: images.comparison ? pngBlob(images.comparison) : null });
      const seconds = ((performance.now() - started) / 1000).toFixed(2);
      setStatus("done", "Done in " + seconds + " s.");
    } catch (error) {
      setStatus("error", "Request failed: " + error.message);
    } finally {
      $("detect").disabled = !(state.files.reference && state.files.comparison);
    }
  }

  function pngBlob(base64) {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    return new Blob([bytes], { type: "image/png" });
  }

  function loaded(img) {
    return new Promise((resolve) => {
      if (img.complete && img.naturalWidth > 0) resolve();
      else { img.onload = () => resolve(); img.onerror = () => resolve(); }
    });
  }

  // ------------------------------------------------------------------ on this device

  function formatMB(bytes) {
    return (bytes / 1e6).toFixed(1) + " MB";
  }

  // The model's manifest, the runtime and an inference session, made once and kept for the page.
  function onDeviceSession() {
    const od = state.onDevice;
    if (od.session) return Promise.resolve(od);
    if (!od.loading) {
      od.loading = loadOnDeviceSession().finally(() => { od.loading = null; });
    }
    return od.loading;
  }

  async function loadOnDeviceSession() {
    const od = state.onDevice;
    const started = performance.now();
    if (!od.manifest) {
      setStatus("working", staticMode ? "Loading the model description…"
        : "Preparing the model for this device (the server exports it once; this can take a minute)…");
      const response = staticMode ? await fetch("model/model.json") : await apiFetch("v1/ondevice/manifest.json");
      if (!response.ok) throw new Error("the model description: " + response.status + " " + (await errorMessage(response)));
      od.manifest = await response.json();
    }
    const threads = Number(params.get("threads") || 0);
    const rt = await window.ChangesegOnDevice.loadRuntime("ort/", params.get("ep") || "auto", threads);
    const bytes = await downloadModel(od.manifest);
    setStatus("working", "Starting the model on this device (" + rt.provider + ")…");
    od.session = await window.ChangesegOnDevice.createSession(rt, bytes);
    od.loadMs = performance.now() - started;
    return od;
  }

  // Fetch model.onnx with a progress line; the API key goes along when the page has one.
  async function downloadModel(manifest) {
    const response = staticMode ? await fetch(manifest.model_url) : await apiFetch(manifest.model_url);
    if (!response.ok) throw new Error("the model: " + response.status + " " + (await errorMessage(response)));
    const expected = manifest.model_bytes || Number(response.headers.get("Content-Length")) || 0;
    if (!response.body || !expected) return new Uint8Array(await response.arrayBuffer());
    const reader = response.body.getReader();
    const bytes = new Uint8Array(expected);
    let received = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (received + value.length > bytes.length) throw new Error("the model is larger than its manifest says");
      bytes.set(value, received);
      received += value.length;
      setStatus("working", "Downloading the model: " + formatMB(received) + " of " + formatMB(expected) + "…");
    }
    if (received !== expected) throw new Error("the model download stopped at " + formatMB(received) + " of " + formatMB(expected));
    return bytes;
  }

  async function decoded(which) {
    const file = state.files[which];
    if (!state.decoded[which]) state.decoded[which] = await window.ChangesegOnDevice.decodeImage(file, which);
    return state.decoded[which];
  }

  function numberOption(id) {
    const text = $(id).value.trim();
    return text === "" ? undefined : Number(text);
  }

  async function detectOnDevice() {
    const { reference, comparison } = state.files;
    if (!reference || !comparison) return;
    $("detect").disabled = true;
    try {
      const loadedBefore = state.onDevice.session !== null;
      const od = await onDeviceSession();
      setStatus("working", "Detecting changes on this device…");
      const started = performance.now();
      const ref = await decoded("reference");
      const cmp = await decoded("comparison");
      const readMs = performance.now() - started;
      const tile = params.get("tile");
      const options = { threshold: numberOption("threshold"), minArea: numberOption("min-area"),
        resize: $("resize").checked, tileSize: tile !== null ? Number(tile) : undefined,
        domain: $("domain").value || undefined };
      const output = await window.ChangesegOnDevice.detect(od.session, od.manifest, ref, cmp, options, (done, total) => {
        if (total > 1) setStatus("working", "Detecting changes on this device: tile " + done + " of " + total + "…");
      });
      const result = output.summary;
      result.timings_ms = { read: Math.round(readMs * 100) / 100, ...result.timings_ms,
        total: Math.round((performance.now() - started) * 100) / 100 };
      if (!loadedBefore) result.timings_ms.model_load = Math.round(od.loadMs * 100) / 100;
      state.lastResult = result;
      state.onDevice.lastMask = output.mask;
      await show(result, output.blobs);
      const where = result.on_device.provider === "webgpu" ? "WebGPU" :
        "WebAssembly, " + result.on_device.threads + " thread" + (result.on_device.threads === 1 ? "" : "s");
      setStatus("done", "Done on this device in " + (result.timings_ms.total / 1000).toFixed(2) + " s (" + where + ")" +
        (loadedBefore ? "." : "; model loaded in " + (od.loadMs / 1000).toFixed(1) + " s."));
    } catch (error) {
      setStatus("error", "On this device: " + error.message);
    } finally {
      $("detect").disabled = !(state.files.reference && state.files.comparison);
    }
  }

  // The last on-device mask (0/1 per pixel, row by row) as base64, for scripted checks.
  state.maskBase64 = function () {
    const mask = state.onDevice.lastMask;
    if (!mask) return null;
    let text = "";
    for (let i = 0; i < mask.length; i += 0x8000) text += String.fromCharCode.apply(null, mask.subarray(i, i + 0x8000));
    return btoa(text);
  };

  function setWhere(where) {
    state.where = where;
    if (!staticMode) localStorage.setItem(WHERE_STORE, where);
    $("where-" + where).checked = true;
    const device = where === "device";
    $("elapsed-label").textContent = device ? "time on this device" : "server time";
    $("align-option").hidden = device || state.serverAligns === false;
    $("domain-option").hidden = state.domains.length === 0;  // both modes apply the same calibrations
    const note = $("where-note");
    note.textContent = device
      ? "On this device: the model runs in this browser (onnxruntime-web); the images are not uploaded." +
        (staticMode ? "" : " The first run downloads the model.")
      : "";
    note.hidden = !device;
    if (state.files.reference && state.files.comparison) {
      setStatus("idle", "Press Detect changes to run " + (device ? "on this device." : "on the server."));
    }
  }

  // ------------------------------------------------------------------ showing a result

  async function show(result, blobs) {
    state.runs += 1;  // for scripted checks: a new result is on the page
    $("result").hidden = false;
    $("region-count").textContent = String(result.region_count);
    $("changed-fraction").textContent = (100 * result.changed_fraction).toFixed(2) + " %";
    $("image-size").textContent = result.width + " × " + result.height;
    const total = result.timings_ms.server_total ?? result.timings_ms.total;
    $("elapsed").textContent = total != null ? Math.round(total) + " ms" : "–";
    const alignmentLine = $("alignment-line");
    const notes = [];
    if (result.alignment) {
      const a = result.alignment;
      notes.push("Aligned with " + a.method.toUpperCase() + ": " + a.inliers + " inliers of " + a.matches +
        " matches, residual " + a.residual_px.toFixed(2) + " px, overlap " + (100 * a.overlap_fraction).toFixed(1) + " %.");
    }
    if (result.unknown_fraction) {
      notes.push((100 * result.unknown_fraction).toFixed(2) + " % of the pixels cannot be judged (shown grey).");
    }
    alignmentLine.textContent = notes.join(" ");
    alignmentLine.hidden = notes.length === 0;

    $("viewer").style.aspectRatio = result.width + " / " + result.height;
    const overlayUrl = objectUrl("overlay", blobs.overlay);
    const maskUrl = objectUrl("mask", blobs.mask);
    const { images, ...summary } = result;
    const jsonUrl = objectUrl("json", new Blob([JSON.stringify(summary, null, 2)], { type: "application/json" }));
    const base = (state.files.comparison.name || "comparison").replace(/\.[^.]+$/, "");
    $("download-mask").href = maskUrl;
    $("download-mask").download = base + "-mask.png";
    $("download-overlay").href = overlayUrl;
    $("download-overlay").download = base + "-overlay.png";
    $("download-json").href = jsonUrl;
    $("download-json").download = base + "-regions.json";

    $("view-reference").src = state.urls.reference;
    $("view-comparison").src = blobs.comparison
      ? objectUrl("served-comparison", blobs.comparison) : state.urls.comparison;
    const overlay = $("view-overlay");
    overlay.src = overlayUrl;
    await loaded(overlay);
    overlay.dataset.loaded = "true";

    drawBoxes(result);
    fillTable(result.regions);
    applyView();
  }

  function drawBoxes(result) {
    const svg = $("boxes");
    svg.setAttribute("viewBox", "0 0 " + result.width + " " + result.height);
    svg.replaceChildren();
    for (const region of result.regions) {
      const [x0, y0, x1, y1] = region.box;
      const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      rect.setAttribute("x", x0);
      rect.setAttribute("y", y0);
      rect.setAttribute("width", x1 - x0);
      rect.setAttribute("height", y1 - y0);
      rect.dataset.region = region.id;
      svg.appendChild(rect);
    }
  }

  function fillTable(regions) {
    const body = $("regions-table").querySelector("tbody");
    body.replaceChildren();
    for (const region of regions) {
      const row = document.createElement("tr");
      row.dataset.region = region.id;
      const cells = [region.id, region.label, region.box.join(", "), region.area,
        region.mean_score.toFixed(3), region.max_score.toFixed(3)];
      cells.forEach((value, i) => {
        const cell = document.createElement("td");
        cell.textContent = String(value);
        if (i !== 1) cell.className = "num";
        row.appendChild(cell);
      });
      row.addEventListener("mouseenter", () => highlight(region.id, true));
      row.addEventListener("mouseleave", () => highlight(region.id, false));
      body.appendChild(row);
    }
    $("regions-table").hidden = regions.length === 0;
    $("no-regions").hidden = regions.length !== 0;
  }

  function highlight(id, on) {
    const rect = $("boxes").querySelector('rect[data-region="' + id + '"]');
    if (rect) rect.classList.toggle("highlight", on);
  }

  function applyView() {
    $("view-overlay").style.opacity = String($("opacity").value / 100);
    const swipe = Number($("swipe").value);
    $("after-layer").style.clipPath = "inset(0 0 0 " + swipe + "%)";
    const divider = $("divider");
    divider.hidden = swipe === 0;
    divider.style.left = swipe + "%";
    $("boxes").classList.toggle("hidden", !$("show-boxes").checked);
  }

  async function loadModelInfo() {
    if (staticMode) return loadStaticModelInfo();
    try {
      const response = await apiFetch("v1/models");
      if (response.status === 401 || response.status === 403) {
        $("model-line").textContent = "Enter this server's API key to use it.";
        return;
      }
      const body = await response.json();
      const model = body.models[0];
      state.maxUpload = body.limits.max_upload_bytes;
      state.serverAligns = model.supports_align !== false;
      if (!state.serverAligns) $("align-option").hidden = true;
      showDomains(model.domains || []);
      const onDevice = model.on_device || { available: false, reason: "this server does not offer it" };
      state.onDevice.available = onDevice.available;
      $("where-device").disabled = !onDevice.available;
      $("where-device").parentElement.title = onDevice.available
        ? "Run the model in this browser: the images are not uploaded"
        : "Not available: " + onDevice.reason;
      if (!onDevice.available && state.where === "device") setWhere("server");
      $("model-line").textContent = "Model: " + model.name + " (" + model.backend + ")" +
        " · up to " + formatBytes(body.limits.max_upload_bytes) + " per request, " +
        (body.limits.max_pixels / 1e6).toFixed(1) + " MP per image";
      if (!model.trained) {
        const warning = $("model-warning");
        warning.textContent = "This model is untrained: its change maps are not meaningful. " +
          "Start the server with --model pointing at a trained checkpoint.";
        warning.hidden = false;
      }
    } catch (error) {
      $("model-line").textContent = "Model information unavailable.";
    }
  }

  // The model's domain calibrations, e.g. "fixed-camera", offered as a choice (server and device).
  function showDomains(domains) {
    state.domains = domains;
    const select = $("domain");
    for (const name of domains) {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name === "fixed-camera" ? "a fixed camera" : name;
      select.appendChild(option);
    }
    $("domain-option").hidden = domains.length === 0;
  }

  // The static page (changeseg export --web): no server, the model's manifest says everything.
  async function loadStaticModelInfo() {
    $("where").hidden = true;
    $("server-links").hidden = true;
    $("align-option").hidden = true;
    try {
      const response = await fetch("model/model.json");
      if (!response.ok) throw new Error(response.status + " " + response.statusText);
      const manifest = await response.json();
      state.onDevice.manifest = manifest;
      showDomains(Object.keys(manifest.domains || {}).sort());
      $("model-line").textContent = "Model: " + manifest.name + " · runs on this device with onnxruntime-web " +
        manifest.runtime.version + " (" + formatMB(manifest.model_bytes) + " model); the images are not uploaded";
      if (!manifest.trained) {
        $("model-warning").textContent = "This model is untrained: its change maps are not meaningful.";
        $("model-warning").hidden = false;
      }
    } catch (error) {
      $("model-line").textContent = "Cannot load model/model.json: " + error.message;
    }
  }

  wireDrop("reference");
  wireDrop("comparison");
  $("detect").addEventListener("click", detect);
  $("auth").addEventListener("submit", useKey);
  ["server", "device"].forEach((where) => $("where-" + where).addEventListener("change", () => setWhere(where)));
  setWhere(staticMode ? "device" : (localStorage.getItem(WHERE_STORE) === "device" ? "device" : "server"));
  ["opacity", "swipe", "show-boxes"].forEach((id) => $(id).addEventListener("input", applyView));
  // Keep the page from navigating away when a file is dropped outside the two zones.
  ["dragover", "drop"].forEach((name) => window.addEventListener(name, (event) => event.preventDefault()));
  loadModelInfo();
})();
