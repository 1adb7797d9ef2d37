// The demo: pick an example design, enqueue it under a fresh render id, follow it live over
// server-sent events, show the image and its thumbnail when it is done. No framework, no build.
"use strict";

const $ = (id) => document.getElementById(id);
const EVENTS = ["stage", "progress", "completed", "failed"];

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

function showResult(data) {
  const image = $("image");
  const thumbnail = $("thumbnail");
  let loaded = 0;
  const onLoad = () => {
    loaded += 1;
    if (loaded === 2) setState("completed");
  };
  image.addEventListener("load", onLoad, { once: true });
  thumbnail.addEventListener("load", onLoad, { once: true });
  image.addEventListener("error", () => showError("The image could not be loaded."), { once: true });
  image.src = data.imageUrl;
  thumbnail.src = data.thumbnailUrl;
  $("result").hidden = false;
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
  $("result").hidden = true;
  $("events").replaceChildren();
  setState("submitting");
  const name = $("example").value;
  const payload = await (await fetch(`/examples/${encodeURIComponent(name)}`)).json();
  payload.renderId = freshRenderId();
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
