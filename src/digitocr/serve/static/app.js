// digitocr's page: draw digits or drop a photo; the server reads them.
// The canvas goes to /v1/read as a PNG exactly as drawn (dark ink on white): all preprocessing happens on the
// server, in the same pipeline the CLI and the API use.
"use strict";

const READ_URL = "/v1/read";
const DEBOUNCE_MS = 250; // after a stroke ends, wait this long for the next one before reading
const INK = "#111";
const PAPER = "#fff";
const LINE_WIDTH_FRACTION = 0.045; // of the canvas height: a thick marker, like MNIST's strokes

const $ = (id) => document.getElementById(id);

function showError(message) {
  const el = $("error");
  el.textContent = message || "";
  el.hidden = !message;
}

async function postImage(blob, filename, query) {
  const form = new FormData();
  form.append("image", blob, filename);
  const response = await fetch(READ_URL + (query || ""), { method: "POST", body: form });
  const body = await response.json().catch(() => ({ error: `the server answered ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `the server answered ${response.status}`);
  return body;
}

// ---- tabs ----
function setupTabs() {
  const tabs = [$("tab-draw"), $("tab-photo")];
  const select = (tab) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !on;
    }
    showError("");
  };
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (e) => {
      if (e.key !== "ArrowRight" && e.key !== "ArrowLeft") return;
      const next = tabs[(i + (e.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
      select(next);
      next.focus();
    });
  });
}

// ---- drawing ----
function setupPad() {
  const canvas = $("pad");
  const ctx = canvas.getContext("2d");
  const strokes = []; // each stroke: [{x, y}, ...] in canvas pixels
  let current = null;
  let timer = null;
  let sequence = 0; // answers to older drawings are dropped

  const toCanvas = (e) => {
    const r = canvas.getBoundingClientRect();
    return { x: (e.clientX - r.left) * (canvas.width / r.width), y: (e.clientY - r.top) * (canvas.height / r.height) };
  };

  function paint() {
    ctx.fillStyle = PAPER;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = INK;
    ctx.fillStyle = INK;
    ctx.lineWidth = canvas.height * LINE_WIDTH_FRACTION;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    for (const s of strokes) drawStroke(s);
  }

  function drawStroke(points) {
    if (points.length === 1) { // a dot
      ctx.beginPath();
      ctx.arc(points[0].x, points[0].y, ctx.lineWidth / 2, 0, 2 * Math.PI);
      ctx.fill();
      return;
    }
    ctx.beginPath();
    ctx.moveTo(points[0].x, points[0].y);
    for (const p of points.slice(1)) ctx.lineTo(p.x, p.y);
    ctx.stroke();
  }

  function updateButtons() {
    $("undo").disabled = strokes.length === 0;
    $("clear").disabled = strokes.length === 0;
  }

  canvas.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    e.preventDefault();
    canvas.setPointerCapture(e.pointerId);
    clearTimeout(timer);
    current = [toCanvas(e)];
    strokes.push(current);
    drawStroke(current);
    updateButtons();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!current) return;
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
    for (const ev of events.length ? events : [e]) {
      const p = toCanvas(ev);
      const last = current[current.length - 1];
      current.push(p);
      ctx.beginPath();
      ctx.moveTo(last.x, last.y);
      ctx.lineTo(p.x, p.y);
      ctx.stroke();
    }
  });
  const endStroke = () => {
    if (!current) return;
    current = null;
    scheduleRead();
  };
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);

  $("undo").addEventListener("click", () => {
    strokes.pop();
    paint();
    updateButtons();
    scheduleRead();
  });
  $("clear").addEventListener("click", () => {
    strokes.length = 0;
    paint();
    updateButtons();
    scheduleRead();
  });

  function scheduleRead() {
    clearTimeout(timer);
    timer = setTimeout(read, DEBOUNCE_MS);
  }

  function read() {
    const mine = ++sequence;
    if (strokes.length === 0) {
      showDigits({ text: "", digits: [] });
      return;
    }
    canvas.toBlob(async (blob) => {
      try {
        const result = await postImage(blob, "drawing.png", "?crops=1");
        if (mine !== sequence) return;
        showError("");
        showDigits(result);
      } catch (err) {
        if (mine === sequence) showError(`Could not read the drawing: ${err.message}`);
      }
    }, "image/png");
  }

  paint();
  updateButtons();
}

function showDigits(result) {
  $("draw-text").textContent = result.text || "–";
  const list = $("draw-digits");
  list.replaceChildren(...result.digits.map(digitCard));
}

function percent(p) {
  return `${(100 * p).toFixed(p >= 0.995 || p < 0.01 ? 0 : 1)}%`;
}

function digitCard(d) {
  const li = document.createElement("li");
  li.className = "digit" + (d.low_confidence ? " low" : "");
  li.setAttribute("aria-label", `Digit ${d.digit}, ${percent(d.confidence)} confident`);

  const seen = document.createElement("img");
  seen.className = "seen";
  seen.src = d.crop;
  seen.width = 28;
  seen.height = 28;
  seen.alt = `The 28 by 28 image the network saw for digit ${d.digit}`;

  const answer = document.createElement("div");
  answer.className = "answer";
  answer.textContent = String(d.digit);
  const small = document.createElement("small");
  small.textContent = percent(d.confidence);
  answer.append(small);

  const bars = document.createElement("div");
  bars.className = "bars";
  bars.setAttribute("role", "img");
  const top = d.probabilities.map((p, k) => [p, k]).sort((a, b) => b[0] - a[0]).slice(0, 3);
  bars.setAttribute("aria-label", "Probabilities: " + top.map(([p, k]) => `${k}: ${percent(p)}`).join(", "));
  d.probabilities.forEach((p, k) => {
    const bar = document.createElement("div");
    bar.className = "bar" + (k === d.digit ? " top" : "");
    bar.title = `${k}: ${percent(p)}`;
    const fill = document.createElement("i");
    fill.style.height = `${Math.max(0, Math.min(1, p)) * 100}%`;
    const label = document.createElement("span");
    label.textContent = String(k);
    label.setAttribute("aria-hidden", "true");
    bar.append(fill, label);
    bars.append(bar);
  });

  li.append(seen, answer, bars);
  return li;
}

// ---- photo ----
function setupPhoto() {
  const drop = $("drop");
  const input = $("photo-file");
  let sequence = 0;

  input.addEventListener("change", () => input.files[0] && readPhoto(input.files[0]));
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    const file = e.dataTransfer.files[0];
    if (file) readPhoto(file);
  });

  async function readPhoto(file) {
    const mine = ++sequence;
    const img = $("photo-img");
    img.src = URL.createObjectURL(file);
    $("photo-figure").hidden = false;
    $("photo-boxes").replaceChildren();
    $("photo-text").textContent = "…";
    try {
      const result = await postImage(file, file.name);
      if (mine !== sequence) return;
      showError("");
      $("photo-text").textContent = result.text || "(no digits found)";
      if (img.complete && img.naturalWidth) drawBoxes(result); else img.onload = () => drawBoxes(result);
    } catch (err) {
      if (mine !== sequence) return;
      $("photo-text").textContent = "–";
      showError(`Could not read ${file.name}: ${err.message}`);
    }
  }
}

function drawBoxes(result) {
  const img = $("photo-img");
  const svg = $("photo-boxes");
  const ns = "http://www.w3.org/2000/svg";
  const w = img.naturalWidth;
  const h = img.naturalHeight;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const stroke = Math.max(2, Math.round(Math.max(w, h) / 300));
  svg.replaceChildren(...result.digits.flatMap((d) => {
    const [x, y, bw, bh] = d.box;
    const rect = document.createElementNS(ns, "rect");
    Object.entries({ x, y, width: bw, height: bh, "stroke-width": stroke }).forEach(([k, v]) => rect.setAttribute(k, v));
    const label = document.createElementNS(ns, "text");
    const size = Math.max(12, Math.round(bh * 0.35));
    Object.entries({ x, y: Math.max(size, y - stroke * 2), "font-size": size, "stroke-width": stroke })
      .forEach(([k, v]) => label.setAttribute(k, v));
    label.textContent = String(d.digit);
    return [rect, label];
  }));
}

document.addEventListener("DOMContentLoaded", () => {
  setupTabs();
  setupPad();
  setupPhoto();
});
