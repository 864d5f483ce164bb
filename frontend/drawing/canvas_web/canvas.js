// The drawing canvas: pen strokes with a mouse, a finger or a pen (pointer events), Undo, Clear, Hand in.
//
// Everything happens here until "Hand in": then the drawing goes to Python once, as a PNG data URL
// (dark ink on white) with a fresh nonce, so a page that runs again never hands the same drawing in
// twice. Python answers in its next render: `accepted` names the nonce the service took (the canvas
// is cleared for the next drawing), `refused` one it did not (the drawing stays, to fix and send again).
"use strict";

(function () {
  const INK = "#111111";
  const PAPER = "#ffffff";
  const board = document.getElementById("board");
  const canvas = document.getElementById("canvas");
  const context = canvas.getContext("2d");
  const undoButton = document.getElementById("undo");
  const clearButton = document.getElementById("clear");
  const handInButton = document.getElementById("hand-in");
  const status = document.getElementById("status");

  let strokes = []; // each a list of [x, y] in canvas pixels
  let current = null; // the stroke being drawn, with the pointer that draws it
  let sent = null; // the nonce of the drawing handed in last
  let answered = null; // the last nonce Python answered for
  let lineWidth = 6;
  // The canvas's words: English until the first render brings Python's, in the reader's language (args.words).
  let words = {
    lang: "en", nothing: "Nothing drawn yet.", drawn: { one: "{count} line drawn.", other: "{count} lines drawn." },
    took_back: "Took back the last line. {counted}", took_back_all: "Took back the last line. Nothing drawn now.",
    cleared: "Cleared. Nothing drawn now.", handing_in: "Handing in…",
    handed_in: "Handed in. Draw another one if you like.",
    not_handed_in: "Not handed in: the page says why. Your drawing is still here.",
  };

  // --- Talking to Streamlit (its component protocol, version 1) ---

  function send(type, data) {
    window.parent.postMessage(Object.assign({ isStreamlitMessage: true, type: type }, data), "*");
  }

  let sentHeight = 0;
  function fitHeight() {
    const height = Math.ceil(board.getBoundingClientRect().height) + 8;
    if (height === sentHeight) return;
    sentHeight = height;
    send("streamlit:setFrameHeight", { height: height });
  }
  if (window.ResizeObserver) new ResizeObserver(fitHeight).observe(board);
  window.addEventListener("resize", fitHeight);

  // --- Drawing ---

  function paint() {
    context.fillStyle = PAPER;
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.strokeStyle = INK;
    context.fillStyle = INK;
    context.lineWidth = lineWidth;
    context.lineCap = "round";
    context.lineJoin = "round";
    strokes.forEach(function (stroke) {
      if (stroke.length === 1) { // a dot
        context.beginPath();
        context.arc(stroke[0][0], stroke[0][1], lineWidth / 2, 0, 2 * Math.PI);
        context.fill();
        return;
      }
      context.beginPath();
      context.moveTo(stroke[0][0], stroke[0][1]);
      for (let i = 1; i < stroke.length; i += 1) context.lineTo(stroke[i][0], stroke[i][1]);
      context.stroke();
    });
    const some = strokes.length > 0;
    undoButton.disabled = !some;
    clearButton.disabled = !some;
    handInButton.disabled = !some;
    document.body.dataset.strokes = String(strokes.length);
  }

  function say(sentence) {
    status.textContent = sentence;
    fitHeight();
  }

  function counted() {
    const n = strokes.length;
    if (n === 0) return words.nothing;
    let form = "other";
    try {
      form = new Intl.PluralRules(words.lang).select(n);
    } catch (error) {
      form = n === 1 ? "one" : "other";
    }
    const template = words.drawn[form] || words.drawn.other;
    return template.replace("{count}", new Intl.NumberFormat(words.lang).format(n));
  }

  // Python's words for the page's own labels and sentences (the first render, and a change of language).
  function hear(heard) {
    if (!heard || !heard.lang) return;
    const changed = heard.lang !== words.lang;
    words = heard;
    if (!changed) return;
    document.documentElement.lang = heard.lang;
    document.title = heard.title;
    canvas.setAttribute("aria-label", heard.area);
    document.getElementById("about").textContent = heard.about;
    undoButton.textContent = heard.undo;
    clearButton.textContent = heard.clear;
    handInButton.textContent = heard.hand_in;
    status.textContent = counted();
    fitHeight();
  }

  function point(event) {
    const box = canvas.getBoundingClientRect();
    const x = ((event.clientX - box.left) * canvas.width) / box.width;
    const y = ((event.clientY - box.top) * canvas.height) / box.height;
    return [Math.max(0, Math.min(canvas.width, x)), Math.max(0, Math.min(canvas.height, y))];
  }

  canvas.addEventListener("pointerdown", function (event) {
    if (event.button !== 0 && event.pointerType === "mouse") return;
    if (current !== null) return; // one line at a time: a second finger does not draw
    event.preventDefault();
    canvas.focus();
    try {
      canvas.setPointerCapture(event.pointerId); // the line goes on when the pointer leaves the canvas
    } catch (error) {
      // a pointer the browser no longer tracks: the line is drawn without capture
    }
    current = { pointer: event.pointerId, stroke: [point(event)] };
    strokes.push(current.stroke);
    paint();
  });

  canvas.addEventListener("pointermove", function (event) {
    if (current === null || event.pointerId !== current.pointer) return;
    event.preventDefault();
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    (events.length ? events : [event]).forEach(function (each) { current.stroke.push(point(each)); });
    paint();
  });

  function lift(event) {
    if (current === null || event.pointerId !== current.pointer) return;
    current = null;
    say(counted());
  }
  canvas.addEventListener("pointerup", lift);
  canvas.addEventListener("pointercancel", lift);

  undoButton.addEventListener("click", function () {
    strokes.pop();
    paint();
    say(strokes.length ? words.took_back.replace("{counted}", counted()) : words.took_back_all);
  });

  clearButton.addEventListener("click", function () {
    strokes = [];
    paint();
    say(words.cleared);
  });

  handInButton.addEventListener("click", function () {
    if (!strokes.length) return;
    paint();
    sent = Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 10);
    handInButton.disabled = true;
    say(words.handing_in);
    send("streamlit:setComponentValue", {
      value: { png: canvas.toDataURL("image/png"), nonce: sent },
      dataType: "json",
    });
  });

  // --- Renders from Streamlit: the theme, and Python's answer to the last hand-in ---

  window.addEventListener("message", function (event) {
    const message = event.data;
    if (!message || message.type !== "streamlit:render") return;
    const theme = message.theme;
    if (theme) {
      const root = document.documentElement.style;
      if (theme.textColor) root.setProperty("--text", theme.textColor);
      if (theme.backgroundColor) root.setProperty("--background", theme.backgroundColor);
      if (theme.secondaryBackgroundColor) root.setProperty("--secondary", theme.secondaryBackgroundColor);
      if (theme.primaryColor) root.setProperty("--primary", theme.primaryColor);
      if (theme.font) root.setProperty("--font", theme.font);
    }
    const args = message.args || {};
    hear(args.words);
    if (args.line_width && args.line_width !== lineWidth) {
      lineWidth = args.line_width;
      paint();
    }
    if (sent === null || answered === sent) return;
    if (args.accepted === sent) {
      answered = sent;
      strokes = [];
      paint();
      say(words.handed_in);
    } else if (args.refused === sent) {
      answered = sent;
      paint();
      say(words.not_handed_in);
    }
  });

  paint();
  fitHeight();
  send("streamlit:componentReady", { apiVersion: 1 });
})();
