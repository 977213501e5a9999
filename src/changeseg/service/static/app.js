// changeseg web page: pick or drop two images, POST them to v1/detect, show the result.
// Plain JavaScript, no build step and no external resources.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const state = { files: { reference: null, comparison: null }, urls: {}, maxUpload: null, lastResult: null };
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

  async function errorMessage(response) {
    try {
      const body = await response.json();
      if (typeof body.detail === "string") return body.detail;
      return JSON.stringify(body.detail);
    } catch (e) {
      return response.status + " " + response.statusText;
    }
  }

  async function detect() {
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
    $("detect").disabled = true;
    setStatus("working", "Detecting changes…");
    const started = performance.now();
    try {
      const response = await fetch("v1/detect", { method: "POST", body: form });
      if (!response.ok) {
        setStatus("error", "Error " + response.status + ": " + (await errorMessage(response)));
        return;
      }
      const result = await response.json();
      state.lastResult = result;
      await show(result);
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

  async function show(result) {
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
    const overlayUrl = objectUrl("overlay", pngBlob(result.images.overlay));
    const maskUrl = objectUrl("mask", pngBlob(result.images.mask));
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
    $("view-comparison").src = result.images.comparison
      ? objectUrl("served-comparison", pngBlob(result.images.comparison)) : state.urls.comparison;
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
    try {
      const response = await fetch("v1/models");
      const body = await response.json();
      const model = body.models[0];
      state.maxUpload = body.limits.max_upload_bytes;
      if (model.supports_align === false) $("align-option").hidden = true;
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

  wireDrop("reference");
  wireDrop("comparison");
  $("detect").addEventListener("click", detect);
  ["opacity", "swipe", "show-boxes"].forEach((id) => $(id).addEventListener("input", applyView));
  // Keep the page from navigating away when a file is dropped outside the two zones.
  ["dragover", "drop"].forEach((name) => window.addEventListener(name, (event) => event.preventDefault()));
  loadModelInfo();
})();
