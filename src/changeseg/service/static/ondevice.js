// changeseg on-device mode: the exported ONNX model runs in this browser with onnxruntime-web
// (WebAssembly, or WebGPU where the browser has it), so the two images never leave the device.
//
// Every step mirrors the Python pipeline (src/changeseg/inference/): images scaled to 0-1 by
// their 8-bit range (the mean/std normalisation is inside the exported graph); images larger
// than the tile size cut into overlapping tiles whose probabilities are blended with a
// raised-cosine weight (tiling.py); change probability = 1 - p(class 0), changed where it is
// at least the threshold, typed models labelling each changed pixel with its most likely change
// class (result.py); 8-connected regions, smaller ones than min_area dropped, largest first
// (regions.py); the overlay tinted and outlined like ChangeResult.overlay(). Unlike the Python
// pipeline, merged regions are never split here nor their boxes grown: a model's split_depth /
// split_cover (region_split.py) and box_grow (box_grow.py) are not in the manifest and do not apply
// in the browser.
//
// No build step and no external resources: onnxruntime-web's own ES modules are imported from
// the runtime folder (RUNTIME_BASE) only when this mode is used. Exposes window.ChangesegOnDevice.
"use strict";

(function () {
  const WEIGHT_FLOOR = 0.05;  // tiling.DEFAULT_WEIGHT_FLOOR
  const MAX_OVERLAP = 128;  // tiling.DEFAULT_TILE_OVERLAP
  const OUTLINE = [255, 255, 0];  // result.py: cv2.drawContours colour
  const DEFAULT_COLOURS = {  // result.CLASS_COLOURS (the manifest carries the authoritative copy)
    changed: [255, 48, 48], appear: [40, 200, 60], disappear: [255, 48, 48], exchange: [255, 190, 0],
  };

  // Python's round(): halves go to the even neighbour (tile starts, outline thickness).
  function pyRound(x) {
    const floor = Math.floor(x);
    const rest = x - floor;
    if (rest > 0.5) return floor + 1;
    if (rest < 0.5) return floor;
    return floor % 2 === 0 ? floor : floor + 1;
  }

  function defaultOverlap(tileSize) {
    return Math.min(MAX_OVERLAP, Math.floor(tileSize / 4));
  }

  // ------------------------------------------------------------------ runtime and session

  let runtime = null;  // {ort, provider, threads, bundle}: one per page (onnxruntime-web's wasm is a singleton)

  async function webgpuAdapter() {
    if (!("gpu" in navigator) || !window.isSecureContext) return null;
    try {
      return await navigator.gpu.requestAdapter();
    } catch (error) {
      return null;
    }
  }

  // Import onnxruntime-web from `base` (a folder URL): the WebGPU build where an adapter exists and
  // `provider` allows it, otherwise the smaller WebAssembly-only build. Decided once per page.
  async function loadRuntime(base, provider, threads) {
    if (runtime) return runtime;
    const folder = new URL(base, document.baseURI).href;
    let useGpu = false;
    if (provider === "webgpu" || provider === "auto") useGpu = (await webgpuAdapter()) !== null;
    if (provider === "webgpu" && !useGpu) throw new Error("WebGPU was asked for, but this browser has no WebGPU adapter");
    const bundle = useGpu ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs";
    let module;
    try {
      module = await import(folder + bundle);
    } catch (error) {
      throw new Error("cannot load the onnxruntime-web runtime from " + folder + bundle + " (" + error.message + ")");
    }
    const ort = module.InferenceSession ? module : module.default;
    // Without cross-origin isolation there is no SharedArrayBuffer, hence one thread (docs/deploy.md).
    const canThread = self.crossOriginIsolated === true;
    const wanted = threads > 0 ? threads : Math.min(4, navigator.hardwareConcurrency || 1);
    ort.env.wasm.numThreads = canThread ? wanted : 1;
    ort.env.wasm.wasmPaths = folder;
    // WebAssembly inference in a worker keeps the page responsive (not available with WebGPU).
    ort.env.wasm.proxy = !useGpu;
    runtime = { ort, provider: useGpu ? "webgpu" : "wasm", threads: ort.env.wasm.numThreads, bundle };
    return runtime;
  }

  // An InferenceSession for the model bytes; WebGPU falls back to WebAssembly if the graph cannot run there.
  async function createSession(rt, bytes) {
    const options = { graphOptimizationLevel: "all" };
    if (rt.provider === "webgpu") {
      try {
        return await rt.ort.InferenceSession.create(bytes, { ...options, executionProviders: ["webgpu"] });
      } catch (error) {
        console.warn("changeseg: WebGPU session failed, using WebAssembly:", error);
        rt.provider = "wasm";
      }
    }
    return await rt.ort.InferenceSession.create(bytes, { ...options, executionProviders: ["wasm"] });
  }

  // ------------------------------------------------------------------ images

  function canvasOf(width, height) {
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    return canvas;
  }

  // Decode an image file into RGBA pixels as the file holds them (EXIF orientation applied, no colour
  // management, no premultiplication), like changeseg.io.images.read_image.
  async function decodeImage(file, name) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, { imageOrientation: "from-image", premultiplyAlpha: "none",
        colorSpaceConversion: "none" });
    } catch (error) {
      throw new Error(name + ": this browser cannot decode " + (file.name || "the file") +
        " (not an image, or a format such as TIFF that only the server reads)");
    }
    const canvas = canvasOf(bitmap.width, bitmap.height);
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    const pixels = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
    const image = { width: bitmap.width, height: bitmap.height, rgba: pixels, bitmap };
    return image;
  }

  // The comparison on the reference's grid: as it is when the sizes agree; resized only when asked
  // (result.match_size; the browser's high-quality smoothing stands in for OpenCV's INTER_AREA).
  function matchSize(reference, comparison, resize) {
    if (reference.width === comparison.width && reference.height === comparison.height) return comparison;
    if (!resize) {
      throw new Error("reference is " + reference.width + "×" + reference.height + " but comparison is " +
        comparison.width + "×" + comparison.height + " (width×height); tick \"Resize comparison to reference\"");
    }
    const canvas = canvasOf(reference.width, reference.height);
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.imageSmoothingEnabled = true;
    context.imageSmoothingQuality = "high";
    context.drawImage(comparison.bitmap, 0, 0, reference.width, reference.height);
    const pixels = context.getImageData(0, 0, reference.width, reference.height).data;
    return { width: reference.width, height: reference.height, rgba: pixels, bitmap: null, resized: true };
  }

  // One tile of an RGBA image as a 1×C×h×w float32 input in 0-1 (uint8 / 255); C = 3, or 1 (grey, as
  // changeseg.io.images.to_model_channels computes it).
  function tileInput(image, tile, channels) {
    const { x: x0, y: y0, width: w, height: h } = tile;
    const plane = w * h;
    const data = new Float32Array(channels * plane);
    const rgba = image.rgba;
    const stride = image.width * 4;
    for (let y = 0; y < h; y++) {
      let source = (y0 + y) * stride + x0 * 4;
      let target = y * w;
      for (let x = 0; x < w; x++, source += 4, target++) {
        if (channels === 3) {
          data[target] = rgba[source] / 255;
          data[plane + target] = rgba[source + 1] / 255;
          data[2 * plane + target] = rgba[source + 2] / 255;
        } else {
          data[target] = Math.floor(0.299 * rgba[source] + 0.587 * rgba[source + 1] + 0.114 * rgba[source + 2]) / 255;
        }
      }
    }
    return data;
  }

  // ------------------------------------------------------------------ tiling (tiling.py)

  function tileStarts(length, tile, overlap) {
    if (length <= tile) return [0];
    const stride = tile - overlap;
    const count = Math.ceil((length - tile) / stride) + 1;
    const span = length - tile;
    const starts = [];
    for (let i = 0; i < count; i++) starts.push(pyRound(i * span / (count - 1)));
    return starts;
  }

  function tileGrid(height, width, tileSize, overlap) {
    if (tileSize === 0) return [[{ y: 0, x: 0, height, width }]];
    const tileH = Math.min(tileSize, height);
    const tileW = Math.min(tileSize, width);
    return tileStarts(height, tileH, overlap).map((y) =>
      tileStarts(width, tileW, overlap).map((x) => ({ y, x, height: tileH, width: tileW })));
  }

  function rampWeights(length, ramp, floor) {
    const weights = new Float32Array(length).fill(1);
    ramp = Math.min(ramp, Math.floor(length / 2));
    for (let i = 0; i < ramp; i++) {
      const position = Math.fround((i + 0.5) / ramp);
      const rise = Math.fround(floor + (1 - floor) * (0.5 - 0.5 * Math.cos(Math.PI * position)));
      weights[i] = rise;
      weights[length - 1 - i] = rise;
    }
    return weights;
  }

  function blendWeights(height, width, overlap, floor) {
    const rows = rampWeights(height, overlap, floor);
    const columns = rampWeights(width, overlap, floor);
    const weights = new Float32Array(height * width);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) weights[y * width + x] = rows[y] * columns[x];
    }
    return weights;
  }

  // Class probabilities of the pair, tile row by tile row (tiling.iter_blended_strips); each finished
  // strip goes to `emit(top, rows, K, probs)` with probs K×rows×W. A pair no larger than the tile size
  // is one "tile" and one strip. `onTile(done, total)` reports progress.
  async function predictStrips(session, reference, comparison, channels, tiling, emit, onTile) {
    const { height, width } = reference;
    const whole = tiling.tileSize <= 0 || Math.max(height, width) <= tiling.tileSize;
    const rows = whole ? [[{ y: 0, x: 0, height, width }]] : tileGrid(height, width, tiling.tileSize, tiling.overlap);
    const total = rows.reduce((n, row) => n + row.length, 0);
    const tileH = rows[0][0].height;
    const tileW = rows[0][0].width;
    const weights = whole ? null : blendWeights(tileH, tileW, tiling.overlap, WEIGHT_FLOOR);
    let accumulator = null;
    let classes = 0;
    const weightSum = whole ? null : new Float32Array(tileH * width);
    let done = 0;
    for (let index = 0; index < rows.length; index++) {
      const row = rows[index];
      const top = row[0].y;
      for (const tile of row) {
        const dims = [1, channels, tile.height, tile.width];
        const feeds = {
          reference: new runtime.ort.Tensor("float32", tileInput(reference, tile, channels), dims),
          comparison: new runtime.ort.Tensor("float32", tileInput(comparison, tile, channels), dims),
        };
        const output = (await session.run(feeds)).probabilities;
        const probs = output.data;
        classes = output.dims[1];
        if (output.dims[2] !== tile.height || output.dims[3] !== tile.width) {
          throw new Error("the model returned probabilities of shape " + output.dims.join("×") + " for a " +
            tile.width + "×" + tile.height + " tile");
        }
        if (whole) {
          emit(0, height, classes, probs);
          if (onTile) onTile(1, 1);
          return classes;
        }
        if (accumulator === null) accumulator = new Float32Array(classes * tileH * width);
        const plane = tile.height * tile.width;
        for (let k = 0; k < classes; k++) {
          for (let y = 0; y < tile.height; y++) {
            const into = k * tileH * width + y * width + tile.x;
            const from = k * plane + y * tile.width;
            for (let x = 0; x < tile.width; x++) accumulator[into + x] += probs[from + x] * weights[y * tile.width + x];
          }
        }
        for (let y = 0; y < tile.height; y++) {
          for (let x = 0; x < tile.width; x++) weightSum[y * width + tile.x + x] += weights[y * tile.width + x];
        }
        if (output.dispose) output.dispose();
        done += 1;
        if (onTile) onTile(done, total);
      }
      const end = index + 1 < rows.length ? rows[index + 1][0].y : height;
      const finished = end - top;
      const strip = new Float32Array(classes * finished * width);
      for (let k = 0; k < classes; k++) {
        for (let i = 0; i < finished * width; i++) {
          strip[k * finished * width + i] = accumulator[k * tileH * width + i] / weightSum[i];
        }
      }
      emit(top, finished, classes, strip);
      // Rows [end, top + tileH) are shared with the next tile row: move them to the top.
      const carried = tileH - finished;
      for (let k = 0; k < classes; k++) {
        const base = k * tileH * width;
        accumulator.copyWithin(base, base + finished * width, base + tileH * width);
        accumulator.fill(0, base + carried * width, base + tileH * width);
      }
      weightSum.copyWithin(0, finished * width, tileH * width);
      weightSum.fill(0, carried * width);
    }
    return classes;
  }

  // ------------------------------------------------------------------ regions (regions.py)

  // 8-connected components of `mask` (Uint8Array H×W), with each component's box, area, centroid,
  // scores and majority class; components under max(minArea, 1) pixels are dropped from the regions
  // and cleared from `mask` (and `classMap`). Regions are sorted largest first, then by box.
  function findRegions(mask, probability, classMap, classNames, width, height, minArea) {
    const labels = new Int32Array(width * height);
    const parent = [0];
    const find = (a) => {
      while (parent[a] !== a) { parent[a] = parent[parent[a]]; a = parent[a]; }
      return a;
    };
    const union = (a, b) => {
      a = find(a); b = find(b);
      if (a !== b) { if (a < b) parent[b] = a; else parent[a] = b; }
    };
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = y * width + x;
        if (!mask[i]) continue;
        let label = 0;
        // the four neighbours already labelled: left, up-left, up, up-right
        for (let n = 0; n < 4; n++) {
          let other = 0;
          if (n === 0) other = x > 0 ? labels[i - 1] : 0;
          else if (y === 0) break;
          else if (n === 1) other = x > 0 ? labels[i - width - 1] : 0;
          else if (n === 2) other = labels[i - width];
          else other = x + 1 < width ? labels[i - width + 1] : 0;
          if (other === 0) continue;
          if (label === 0) label = other; else if (other !== label) union(label, other);
        }
        if (label === 0) { label = parent.length; parent.push(label); }
        labels[i] = label;
      }
    }
    const stats = new Map();  // root -> statistics
    const typed = classMap !== null;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = y * width + x;
        if (!labels[i]) continue;
        const root = find(labels[i]);
        labels[i] = root;
        let s = stats.get(root);
        if (!s) {
          s = { area: 0, x0: x, y0: y, x1: x, y1: y, sumX: 0, sumY: 0, sumP: 0, maxP: -Infinity,
            counts: typed ? new Float64Array(classNames.length) : null };
          stats.set(root, s);
        }
        s.area += 1;
        if (x < s.x0) s.x0 = x;
        if (x > s.x1) s.x1 = x;
        if (y > s.y1) s.y1 = y;
        s.sumX += x;
        s.sumY += y;
        const p = probability[i];
        s.sumP += p;
        if (p > s.maxP) s.maxP = p;
        if (typed) s.counts[classMap[i]] += 1;
      }
    }
    const keep = new Map();
    const regions = [];
    for (const [root, s] of stats) {
      if (s.area < Math.max(minArea, 1)) continue;
      keep.set(root, true);
      let label = "changed";
      if (typed) {
        let best = 0;
        for (let k = 1; k < s.counts.length; k++) if (s.counts[k] > s.counts[best]) best = k;
        label = classNames[best];
      }
      regions.push({ box: [s.x0, s.y0, s.x1 + 1, s.y1 + 1], area: s.area, centroid: [s.sumX / s.area, s.sumY / s.area],
        mean_score: s.sumP / s.area, max_score: s.maxP, label });
    }
    regions.sort((a, b) => (b.area - a.area) || (a.box[0] - b.box[0]) || (a.box[1] - b.box[1]) ||
      (a.box[2] - b.box[2]) || (a.box[3] - b.box[3]));
    for (let i = 0; i < labels.length; i++) {
      if (labels[i] && !keep.has(labels[i])) {
        mask[i] = 0;
        if (typed) classMap[i] = 0;
      }
    }
    return regions.map((r, index) => ({ id: index + 1, ...r }));
  }

  // ------------------------------------------------------------------ overlay and PNGs (result.py)

  // Mask pixels on the outer boundary of their component (cv2.RETR_EXTERNAL): 4-adjacent to background
  // that is connected to the image border, or on the border itself.
  function outerBoundary(mask, width, height) {
    const outside = new Uint8Array(width * height);
    const stack = [];
    const push = (i) => { if (!mask[i] && !outside[i]) { outside[i] = 1; stack.push(i); } };
    for (let x = 0; x < width; x++) { push(x); push((height - 1) * width + x); }
    for (let y = 0; y < height; y++) { push(y * width); push(y * width + width - 1); }
    while (stack.length) {
      const i = stack.pop();
      const x = i % width;
      if (x > 0) push(i - 1);
      if (x + 1 < width) push(i + 1);
      if (i >= width) push(i - width);
      if (i + width < width * height) push(i + width);
    }
    const boundary = [];
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = y * width + x;
        if (!mask[i]) continue;
        if (x === 0 || y === 0 || x + 1 === width || y + 1 === height || outside[i - 1] || outside[i + 1] ||
            outside[i - width] || outside[i + width]) boundary.push(i);
      }
    }
    return boundary;
  }

  // The comparison (RGBA) tinted where it changed and outlined: ChangeResult.overlay(alpha 0.45).
  function overlayPixels(comparison, mask, classMap, classNames, colours, alpha) {
    const { width, height } = comparison;
    const out = new Uint8ClampedArray(comparison.rgba);
    const palette = classNames.map((name) => colours[name] || colours.changed);
    const keepWeight = Math.fround(1 - alpha);
    const tintWeight = Math.fround(alpha);
    const roundEven = (v) => pyRound(v);
    for (let i = 0; i < mask.length; i++) {
      out[4 * i + 3] = 255;
      if (!mask[i]) continue;
      const colour = classMap ? (palette[classMap[i]] || colours.changed) : colours.changed;
      for (let c = 0; c < 3; c++) {
        const value = Math.fround(Math.fround(keepWeight * out[4 * i + c]) + Math.fround(tintWeight * colour[c]));
        out[4 * i + c] = roundEven(value);
      }
    }
    const thickness = Math.max(1, pyRound(Math.max(width, height) / 400));
    const radius = (thickness - 1) / 2;
    const reach = Math.ceil(radius);
    for (const i of outerBoundary(mask, width, height)) {
      const cx = i % width;
      const cy = (i - cx) / width;
      for (let dy = -reach; dy <= reach; dy++) {
        for (let dx = -reach; dx <= reach; dx++) {
          const x = cx + dx;
          const y = cy + dy;
          if (x < 0 || y < 0 || x >= width || y >= height || dx * dx + dy * dy > radius * radius + 0.5) continue;
          const j = 4 * (y * width + x);
          out[j] = OUTLINE[0]; out[j + 1] = OUTLINE[1]; out[j + 2] = OUTLINE[2];
        }
      }
    }
    return out;
  }

  function pngBlob(rgba, width, height) {
    const canvas = canvasOf(width, height);
    canvas.getContext("2d").putImageData(new ImageData(rgba, width, height), 0, 0);
    return new Promise((resolve, reject) => canvas.toBlob((blob) => blob ? resolve(blob) :
      reject(new Error("the browser could not encode a PNG")), "image/png"));
  }

  function greyRgba(values, scale) {
    const rgba = new Uint8ClampedArray(values.length * 4);
    for (let i = 0; i < values.length; i++) {
      const v = values[i] * scale;
      rgba[4 * i] = v; rgba[4 * i + 1] = v; rgba[4 * i + 2] = v; rgba[4 * i + 3] = 255;
    }
    return rgba;
  }

  function round(value, digits) {
    return Number(value.toFixed(digits));
  }

  // ------------------------------------------------------------------ one pair

  // p(no change) of pixel i after a domain calibration: exp(log p0 / T + b) over the sum of every
  // class's exp(log pk / T) (class 0's with b), the largest term factored out as numpy does.
  function calibratedNoChange(probs, plane, i, classes, domain) {
    const floor = 1e-12;
    const terms = new Array(classes);
    let top = -Infinity;
    for (let k = 0; k < classes; k++) {
      terms[k] = Math.log(Math.max(probs[k * plane + i], floor)) / domain.temperature +
        (k === 0 ? domain.no_change_bias : 0);
      if (terms[k] > top) top = terms[k];
    }
    let total = 0;
    for (let k = 0; k < classes; k++) total += Math.exp(terms[k] - top);
    return Math.exp(terms[0] - top) / total;
  }

  // Detect changes between two decoded images with a session made by createSession. `manifest` is
  // the model's web manifest (threshold, min_area, class names, tiling, overlay colours); options
  // may override threshold, minArea, tileSize and resize, and name a `domain` calibration. Returns the
  // server's JSON summary shape plus `mask` (Uint8Array 0/1), `probability` (Float32Array), `classMap`
  // and PNG blobs in `blobs`.
  async function detect(session, manifest, reference, comparison, options, onProgress) {
    const started = performance.now();
    comparison = matchSize(reference, comparison, options.resize);
    const { width, height } = reference;
    const threshold = options.threshold ?? manifest.threshold;
    if (!(threshold >= 0 && threshold <= 1)) throw new Error("threshold must be between 0 and 1, got " + threshold);
    const minArea = options.minArea ?? manifest.min_area ?? 0;
    if (!(Number.isInteger(minArea) && minArea >= 0)) throw new Error("minimum area must be a whole number ≥ 0, got " + minArea);
    const tileSize = options.tileSize ?? manifest.tiling.tile_size;
    if (!(Number.isInteger(tileSize) && (tileSize === 0 || tileSize >= 32))) {
      throw new Error("tile size must be 0 (no tiling) or at least 32 pixels, got " + tileSize);  // tiling.check_tiling
    }
    const overlap = options.tileSize != null ? defaultOverlap(tileSize) : manifest.tiling.overlap;
    // a domain calibration (domains.py): softmax(log p / T + b on class 0) of each pixel's probabilities
    const domains = manifest.domains || {};
    const domain = options.domain ? domains[options.domain] : null;
    if (options.domain && !domain) {
      throw new Error("this model has no calibration for domain " + options.domain + " (its domains: " +
        (Object.keys(domains).join(", ") || "none") + ")");
    }
    const cut = Math.fround(threshold);  // numpy compares the float32 probability with a float32 threshold
    const channels = manifest.in_channels || 3;
    if (channels !== 1 && channels !== 3) throw new Error("on-device mode runs 1- or 3-channel models; this one takes " + channels);
    const classNames = manifest.class_names;
    const pixels = width * height;
    const probability = new Float32Array(pixels);
    const mask = new Uint8Array(pixels);
    const typed = classNames.length > 2;
    const classMap = typed ? new Uint8Array(pixels) : null;
    const inferStarted = performance.now();
    let inferenceMs = 0;
    let postMs = 0;
    let mark = inferStarted;
    await predictStrips(session, reference, comparison, channels, { tileSize, overlap }, (top, rows, classes, probs) => {
      const now = performance.now();
      inferenceMs += now - mark;
      const plane = rows * width;
      for (let i = 0; i < plane; i++) {
        const p = Math.fround(1 - (domain ? calibratedNoChange(probs, plane, i, classes, domain) : probs[i]));
        const at = top * width + i;
        probability[at] = p;
        if (p >= cut) {
          mask[at] = 1;
          if (typed) {
            let best = 1;
            for (let k = 2; k < classes; k++) if (probs[k * plane + i] > probs[best * plane + i]) best = k;
            classMap[at] = best;
          }
        }
      }
      mark = performance.now();
      postMs += mark - now;
    }, onProgress);
    const postStarted = performance.now();
    const regions = findRegions(mask, probability, classMap, classNames, width, height, minArea);
    let changed = 0;
    for (let i = 0; i < pixels; i++) changed += mask[i];
    const colours = manifest.overlay ? manifest.overlay.colours : DEFAULT_COLOURS;
    const alpha = manifest.overlay ? manifest.overlay.alpha : 0.45;
    const blobs = {
      mask: await pngBlob(greyRgba(mask, 255), width, height),
      overlay: await pngBlob(overlayPixels(comparison, mask, classMap, classNames, colours, alpha), width, height),
    };
    if (comparison.resized) blobs.comparison = await pngBlob(new Uint8ClampedArray(comparison.rgba), width, height);
    postMs += performance.now() - postStarted;
    const summary = {
      model: manifest.name,
      trained: manifest.trained,
      width,
      height,
      threshold,
      changed_fraction: round(pixels ? changed / pixels : 0, 6),
      changed_pixels: changed,
      region_count: regions.length,
      ...(typed ? { class_names: classNames.slice() } : {}),
      timings_ms: { inference: round(inferenceMs, 2), postprocess: round(postMs, 2),
        total: round(performance.now() - started, 2) },
      regions: regions.map((r) => ({ id: r.id, box: r.box, area: r.area,
        centroid: [round(r.centroid[0], 2), round(r.centroid[1], 2)], mean_score: round(r.mean_score, 4),
        max_score: round(r.max_score, 4), label: r.label })),
      on_device: { runtime: "onnxruntime-web", provider: runtime.provider, threads: runtime.threads,
        tile_size: tileSize, tile_overlap: overlap, domain: options.domain || null },
    };
    return { summary, mask, probability, classMap, blobs };
  }

  window.ChangesegOnDevice = { loadRuntime, createSession, decodeImage, detect, tileStarts, pyRound,
    get runtime() { return runtime; } };
})();
