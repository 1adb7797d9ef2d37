// The demo: pick an example design, enqueue it under a fresh render id, follow it live over
// server-sent events, show the image and its thumbnail when it is done. An example made from a
// bundled site photo shows it before (the marked area tinted and outlined) next to the render.
// No framework, no build.
"use strict";

const $ = (id) => document.getElementById(id);
const EVENTS = ["stage", "progress", "completed", "failed"];
// The reserved origin of the bundled example images (never resolvable, RFC 2606): the browser
// gets them from the progress server. The same bare file names the worker accepts, no others.
const EXAMPLE_IMAGE = /^https:\/\/examples\.render-assets\.invalid\/([A-Za-z0-9_-]{1,64}\.(?:png|jpg))$/;
const MARKED_FROM = 128; // luminance from which the worker reads a mask pixel as "redesign"
const OUTLINE_PX = 3;
const TINT = [255, 196, 0, 80];
const OUTLINE = [255, 196, 0, 255];
let before = null; // the chosen example's photo and mask, when it has a bundled photo

function setState(state) {
  document.body.dataset.state = state;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  setState("failed");
}

function freshRenderId() {
  const random = Math.random().toString(36).slice(2, 8);
  return `demo-${Date.now().toString(36)}-${random}`;
}

async function loadExamples() {
  const response = await fetch("/examples");
  const examples = await response.json();
  const select = $("example");
  for (const example of examples) {
    const option = document.createElement("option");
    option.value = example.name;
    option.textContent = `${example.title} (${example.resolution}, ${example.tier})`;
    select.append(option);
  }
  if (examples.length === 0) {
    showError("No example designs found (the server's --examples folder is empty).");
    return;
  }
  $("submit").disabled = false;
}

function logEvent(name, data) {
  const item = document.createElement("li");
  item.dataset.event = name;
  item.dataset.stage = data.stage;
  item.textContent = `${name}: ${data.stage} ${data.percent} %${data.snapshot ? " (snapshot)" : ""}`;
  $("events").append(item);
}

function showProgress(data) {
  $("stage").textContent = data.message ? `${data.stage}: ${data.message}` : data.stage;
  $("bar").value = data.percent;
  $("percent").textContent = `${data.percent} %`;
}

function exampleImage(url) {
  const match = EXAMPLE_IMAGE.exec(url || "");
  return match ? `/examples/images/${match[1]}` : null;
}

function beforeOf(payload) {
  const photo = exampleImage(payload.sourceImageUrl);
  if (photo === null) return null; // a photo the browser cannot load: the render alone, as before
  const shapes = (payload.annotations || [])
    .filter((annotation) => annotation.type === "mask" && annotation.data && annotation.data.shape)
    .map((annotation) => annotation.data);
  return { photo, mask: exampleImage(payload.maskImageUrl), shapes };
}

function loaded(image, src, what) {
  return new Promise((resolve, reject) => {
    image.addEventListener("load", () => resolve(image), { once: true });
    image.addEventListener("error", () => reject(new Error(`The ${what} could not be loaded.`)), { once: true });
    image.src = src;
  });
}

// 1 where the worker redesigns, 0 where it keeps the photo: the mask image's luminance, or the
// drawn shapes (fractions of the photo, from its top-left corner) filled white on black.
function markedPixels(width, height, mask, shapes) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.fillStyle = "#000";
  context.fillRect(0, 0, width, height);
  context.fillStyle = "#fff";
  if (mask) context.drawImage(mask, 0, 0, width, height);
  for (const shape of mask ? [] : shapes) {
    if (shape.shape === "rectangle") {
      context.fillRect(shape.x * width, shape.y * height, shape.width * width, shape.height * height);
    } else if (shape.shape === "polygon") {
      context.beginPath();
      for (const point of shape.points) context.lineTo(point.x * width, point.y * height);
      context.closePath();
      context.fill("evenodd");
    }
  }
  const rgba = context.getImageData(0, 0, width, height).data;
  const marked = new Uint8Array(width * height);
  for (let i = 0; i < marked.length; i += 1) {
    const luminance = 0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1] + 0.114 * rgba[4 * i + 2];
    marked[i] = luminance >= MARKED_FROM ? 1 : 0;
  }
  return marked;
}

function onEdge(marked, width, height, x, y) {
  for (let step = 1; step <= OUTLINE_PX; step += 1) {
    for (const [nx, ny] of [[x - step, y], [x + step, y], [x, y - step], [x, y + step]]) {
      if (nx >= 0 && ny >= 0 && nx < width && ny < height && !marked[ny * width + nx]) return true;
    }
  }
  return false;
}

function drawOverlay(canvas, photo, mask, shapes) {
  const width = photo.naturalWidth;
  const height = photo.naturalHeight;
  canvas.width = width;
  canvas.height = height;
  const marked = markedPixels(width, height, mask, shapes);
  const context = canvas.getContext("2d");
  const overlay = context.createImageData(width, height);
  let count = 0;
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      if (!marked[y * width + x]) continue;
      count += 1;
      overlay.data.set(onEdge(marked, width, height, x, y) ? OUTLINE : TINT, 4 * (y * width + x));
    }
  }
  context.putImageData(overlay, 0, 0);
  canvas.dataset.marked = String(count);
}

async function showBefore(chosen) {
  const marks = chosen.mask !== null || chosen.shapes.length > 0;
  $("before").querySelector("figcaption").textContent = marks
    ? "Before: the site photo, the area to redesign tinted and outlined"
    : "Before: the site photo (redesigned as a whole)";
  const photo = await loaded($("before-image"), chosen.photo, "site photo");
  const mask = chosen.mask ? await loaded(new Image(), chosen.mask, "mask") : null;
  if (marks) drawOverlay($("mask-overlay"), photo, mask, chosen.shapes);
}

function resetResult() {
  $("result").hidden = true;
  $("result").classList.remove("comparing");
  $("before").hidden = true;
  $("image-caption").textContent = "The render";
  $("before-image").removeAttribute("src"); // the same example again loads (and fires) anew
  const overlay = $("mask-overlay");
  overlay.width = 0; // clears it
  delete overlay.dataset.marked;
}

async function showResult(data) {
  const comparing = before !== null;
  $("before").hidden = !comparing;
  $("result").classList.toggle("comparing", comparing);
  $("image-caption").textContent = comparing ? "After: the render" : "The render";
  $("result").hidden = false;
  try {
    await Promise.all([
      loaded($("image"), data.imageUrl, "image"),
      loaded($("thumbnail"), data.thumbnailUrl, "thumbnail"),
      comparing ? showBefore(before) : null,
    ]);
  } catch (error) {
    showError(error.message);
    return;
  }
  setState("completed");
}

function follow(renderId, eventsUrl, lastEventId = "") {
  const url = lastEventId ? `${eventsUrl}?lastEventId=${encodeURIComponent(lastEventId)}` : eventsUrl;
  const source = new EventSource(url);
  let ended = false;
  setState("watching");
  source.onopen = () => { $("connection").textContent = "live"; };
  source.onerror = () => {
    if (ended) return;
    if (source.readyState === EventSource.CLOSED) {
      // The server refused (say a 503 while Redis restarts): EventSource gives up, we do not.
      $("connection").textContent = "server unavailable, retrying…";
      setTimeout(() => follow(renderId, eventsUrl, lastEventId), 2000);
    } else {
      // A dropped connection: EventSource reconnects by itself, sending Last-Event-ID.
      $("connection").textContent = "connection lost, reconnecting…";
    }
  };
  for (const name of EVENTS) {
    source.addEventListener(name, (event) => {
      if (event.lastEventId) lastEventId = event.lastEventId;
      const data = JSON.parse(event.data);
      logEvent(name, data);
      showProgress(data);
      if (name === "completed" || name === "failed") {
        ended = true;
        source.close();
        $("connection").textContent = "done";
      }
      if (name === "completed") showResult(data);
      if (name === "failed") showError(`Render failed: ${data.reason || data.message}`);
    });
  }
}

async function submit(event) {
  event.preventDefault();
  $("error").hidden = true;
  resetResult();
  $("events").replaceChildren();
  setState("submitting");
  const name = $("example").value;
  const payload = await (await fetch(`/examples/${encodeURIComponent(name)}`)).json();
  payload.renderId = freshRenderId();
  before = beforeOf(payload);
  const response = await fetch("/renders", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(payload),
  });
  const body = await response.json();
  if (!response.ok) {
    showError(body.error || `HTTP ${response.status}`);
    return;
  }
  $("render-id").textContent = body.renderId;
  $("progress").hidden = false;
  showProgress({ stage: "queued", percent: 0 });
  follow(body.renderId, body.events);
}

$("render-form").addEventListener("submit", submit);
loadExamples().catch((error) => showError(`Could not load the examples: ${error}`));
