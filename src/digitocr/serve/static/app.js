// digitocr's page: draw digits or drop a photo; the server reads them.
// The canvas goes to /v1/read as a PNG exactly as drawn (dark ink on white): all preprocessing happens on the
// server, in the same pipeline the CLI and the API use.
"use strict";

const READ_URL = "/v1/read";
const DEBOUNCE_MS = 250; // after a stroke ends, wait this long for the next one before reading
const INK = "#111";
const PAPER = "#fff";
const LINE_WIDTH_FRACTION = 0.045; // of the canvas height: a thick marker, like MNIST's strokes
const MIN_LABEL_PX = 14; // a box's digit label is at least this tall on screen
const ANSWER_TIMEOUT_MS = 15000; // the server gives up on a read after 10 s (504); past this it is not answering

const $ = (id) => document.getElementById(id);

// Each panel has its own error line and busy mark: an error stays with the panel it belongs to.
function showError(panel, message) {
  const el = $(`${panel}-error`);
  el.textContent = message || "";
  el.hidden = !message;
}

function setBusy(panel, busy) {
  $(`${panel}-busy`).hidden = !busy;
  $(`${panel}-result`).setAttribute("aria-busy", String(busy));
}

async function postImage(blob, filename, query) {
  const form = new FormData();
  form.append("image", blob, filename);
  let response;
  try {
    response = await fetch(READ_URL + (query || ""), {
      method: "POST", body: form, signal: AbortSignal.timeout(ANSWER_TIMEOUT_MS),
    });
  } catch (err) { // no HTTP answer at all: say so in words, not the browser's "Failed to fetch"
    throw new Error(err.name === "TimeoutError"
      ? `the server did not answer within ${ANSWER_TIMEOUT_MS / 1000} s`
      : "the server could not be reached; is it still running?");
  }
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
  };
  // the ARIA tabs pattern: arrows move between tabs, Home and End go to the first and last
  const keyTarget = { ArrowRight: (i) => (i + 1) % tabs.length, ArrowLeft: (i) => (i + tabs.length - 1) % tabs.length,
    Home: () => 0, End: () => tabs.length - 1 };
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (e) => {
      if (!(e.key in keyTarget)) return;
      e.preventDefault();
      const next = tabs[keyTarget[e.key](i)];
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
  let pointer = null; // the pointer drawing `current`: a second finger or a palm does not join its stroke
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
    if (e.button !== 0 || current) return;
    e.preventDefault();
    pointer = e.pointerId;
    canvas.setPointerCapture(e.pointerId);
    clearTimeout(timer);
    current = [toCanvas(e)];
    strokes.push(current);
    drawStroke(current);
    updateButtons();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!current || e.pointerId !== pointer) return;
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
  const endStroke = (e) => {
    if (!current || e.pointerId !== pointer) return;
    current = null;
    pointer = null;
    scheduleRead();
  };
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);

  // a button that disables itself would drop keyboard focus to <body>: it goes to the canvas instead
  const keepFocus = () => { if (document.activeElement && document.activeElement.disabled) canvas.focus(); };
  $("undo").addEventListener("click", () => {
    strokes.pop();
    paint();
    updateButtons();
    keepFocus();
    scheduleRead();
  });
  $("clear").addEventListener("click", () => {
    strokes.length = 0;
    paint();
    updateButtons();
    keepFocus();
    scheduleRead();
  });

  function scheduleRead() {
    clearTimeout(timer);
    timer = setTimeout(read, DEBOUNCE_MS);
  }

  function read() {
    const mine = ++sequence;
    if (strokes.length === 0) {
      setBusy("draw", false);
      showError("draw", "");
      showDigits({ text: "", digits: [] });
      return;
    }
    setBusy("draw", true);
    canvas.toBlob(async (blob) => {
      try {
        const result = await postImage(blob, "drawing.png", "?crops=1");
        if (mine !== sequence) return;
        showError("draw", "");
        showDigits(result);
      } catch (err) {
        if (mine !== sequence) return;
        showDigits({ text: "", digits: [] }); // what is shown must be this drawing's reading, or nothing
        showError("draw", `Could not read the drawing: ${err.message}`);
      }
      if (mine === sequence) setBusy("draw", false);
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

// One decimal, never "100%" nor "0%": a network's 0.996 is not certainty, and its 0.0004 is not impossible.
function percent(p) {
  if (p >= 0.9995) return ">99.9%";
  if (p < 0.0005) return "<0.1%";
  return `${(100 * p).toFixed(1)}%`;
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

  input.addEventListener("change", () => {
    const file = input.files[0];
    input.value = ""; // choosing the same file again (after an error, say) must read it again
    if (file) readPhoto(file);
  });
  // a file dropped anywhere else on the page must not replace the page (and the drawing) with the file
  for (const type of ["dragover", "drop"]) {
    document.addEventListener(type, (e) => { if (!drop.contains(e.target)) e.preventDefault(); });
  }
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
    if (img.src) URL.revokeObjectURL(img.src);
    // whether the browser can show it (it cannot show TIFF, say), known once the preview loads or fails
    const preview = new Promise((resolve) => {
      img.onload = () => resolve(true);
      img.onerror = () => resolve(false);
    });
    img.src = URL.createObjectURL(file);
    $("photo-figure").hidden = true; // shown with this photo's boxes, never with another's
    $("photo-no-preview").hidden = true;
    $("photo-boxes").replaceChildren();
    $("photo-text").textContent = "…";
    setBusy("photo", true);
    try {
      const result = await postImage(file, file.name);
      const shown = await preview;
      if (mine !== sequence) return;
      showError("photo", "");
      $("photo-text").textContent = result.text || "(no digits found)";
      if (shown) {
        $("photo-figure").hidden = false;
        drawBoxes(result);
      } else {
        $("photo-no-preview").hidden = false;
      }
    } catch (err) {
      if (mine !== sequence) return;
      $("photo-text").textContent = "–";
      showError("photo", `Could not read ${file.name}: ${err.message}`);
    }
    if (mine === sequence) setBusy("photo", false);
  }
}

function drawBoxes(result) {
  const img = $("photo-img");
  const svg = $("photo-boxes");
  const ns = "http://www.w3.org/2000/svg";
  const w = img.naturalWidth;
  const h = img.naturalHeight;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  // sizes are in the photo's pixels; a large photo shown small (a phone) still gets readable labels
  const perScreenPx = w / Math.max(1, img.clientWidth);
  const stroke = Math.max(2 * perScreenPx, Math.round(Math.max(w, h) / 300));
  svg.replaceChildren(...result.digits.flatMap((d) => {
    const [x, y, bw, bh] = d.box;
    const rect = document.createElementNS(ns, "rect");
    Object.entries({ x, y, width: bw, height: bh, "stroke-width": stroke }).forEach(([k, v]) => rect.setAttribute(k, v));
    const label = document.createElementNS(ns, "text");
    const size = Math.max(MIN_LABEL_PX * perScreenPx, Math.round(bh * 0.35));
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
