// The trajectory player: plays, pauses, steps and scrubs a trajectory's pictures in the browser.
//
// Streamlit sends the pictures once (with each render of the page, unchanged); everything
// after that happens here, with no round trip to the server. Only when the lesson asks
// (args.report) is the step sent back, and then only once the student has stopped on it,
// never while it plays: each value sent makes the page run again.
"use strict";

(function () {
  const player = document.getElementById("player");
  const playButton = document.getElementById("play");
  const backButton = document.getElementById("back");
  const forwardButton = document.getElementById("forward");
  const scrub = document.getElementById("scrub");
  const speedSelect = document.getElementById("speed");
  const where = document.getElementById("where");
  const pictures = document.getElementById("pictures");
  const note = document.getElementById("note");
  const announcer = document.getElementById("announce");
  // Asked for less motion (the system's setting): playing starts at the slowest speed, and nothing ever plays
  // by itself (nothing does in any case: only Play, or the space key, starts it).
  const reduceMotion = Boolean(window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches);
  document.body.dataset.reducedMotion = reduceMotion ? "true" : "false";

  let args = null; // what Python sent: id, panels, frames, stills, start, report, width, speed, prompt
  let step = 0;
  let timer = null;
  let reported = null; // the step last sent to Python
  let reportTimer = null;
  let images = []; // one <img> (or placeholder) per panel

  // --- Talking to Streamlit (its component protocol, version 1) ---

  function send(type, data) {
    window.parent.postMessage(Object.assign({ isStreamlitMessage: true, type: type }, data), "*");
  }

  // The frame is as tall as the player's content. Measured on the player, not the document: the
  // document is never shorter than the frame, so a frame that had grown would never shrink back.
  let sentHeight = 0;
  function fitHeight() {
    const height = Math.ceil(player.getBoundingClientRect().height) + 2;
    if (height === sentHeight) return;
    sentHeight = height;
    send("streamlit:setFrameHeight", { height: height });
  }
  // A window resized (or a sidebar opened) makes the frame narrower or wider: the panels wrap onto
  // more rows or fewer, and the frame must follow, or the last row is cut off.
  if (window.ResizeObserver) new ResizeObserver(fitHeight).observe(player);
  window.addEventListener("resize", fitHeight);

  function report() {
    if (!args || !args.report || timer !== null || step === reported) return;
    clearTimeout(reportTimer);
    // A short delay: holding an arrow key sends one value, not one per step.
    reportTimer = setTimeout(function () {
      if (timer !== null || step === reported) return;
      reported = step;
      send("streamlit:setComponentValue", { value: step, dataType: "json" });
    }, 250);
  }

  // --- Drawing ---

  function text(tag, content, className) {
    const node = document.createElement(tag);
    node.textContent = content;
    if (className) node.className = className;
    return node;
  }

  // A sentence of Python's (args.words, in the reader's language) with its {names} filled in, in one pass.
  function say(key, values) {
    const template = String((args && args.words && args.words[key]) || "");
    return template.replace(/\{(\w+)\}/g, function (whole, name) {
      return values && values[name] !== undefined ? String(values[name]) : whole;
    });
  }

  // A picture's text alternative: which view, of which prompt, at which step (a still: no step).
  function altText(caption, label) {
    const values = { caption: caption, prompt: args ? args.prompt : "", step: label };
    if (args && args.prompt) return say(label ? "alt_prompt_step" : "alt_prompt", values);
    return label ? say("alt", values) : caption;
  }

  // The page's own words (its English shows only until the first render) in the reader's language.
  function label() {
    const words = args.words || {};
    if (!words.title) return;
    document.title = words.title;
    backButton.setAttribute("aria-label", words.back);
    backButton.title = words.back_title;
    forwardButton.setAttribute("aria-label", words.forward);
    forwardButton.title = words.forward_title;
    playButton.title = words.play_title;
    scrub.setAttribute("aria-label", words.step);
    speedSelect.setAttribute("aria-label", words.speed);
    document.getElementById("speed-label").textContent = words.speed;
    Array.from(speedSelect.options).forEach(function (option, index) {
      if (words.speeds && words.speeds[index]) option.textContent = words.speeds[index];
    });
    document.getElementById("keys").textContent = words.keys;
    document.documentElement.lang = words.lang || document.documentElement.lang;
  }

  // What a screen reader says next (a live region): said once, when the student acts, never at every step played.
  function announce(sentence) {
    announcer.textContent = sentence;
  }

  function stepWords() {
    const frame = args.frames[step];
    return facts(frame).length ? say("step_noise", { step: frame.label, facts: facts(frame).join(", ") }) : frame.label;
  }

  // A number as the reader's language writes it (args.words.lang: 0.570 / 0,570), no thousands separator.
  function written(value, options) {
    const lang = (args && args.words && args.words.lang) || "en";
    try {
      return new Intl.NumberFormat(lang, Object.assign({ useGrouping: false }, options)).format(value);
    } catch (error) {
      return new Intl.NumberFormat("en", Object.assign({ useGrouping: false }, options)).format(value);
    }
  }

  function facts(frame) {
    const found = [];
    if (frame.t !== null && frame.t !== undefined) found.push("t = " + written(frame.t, { maximumSignificantDigits: 4 }));
    if (frame.sigma !== null && frame.sigma !== undefined) {
      found.push("σ = " + written(frame.sigma, { minimumFractionDigits: 3, maximumFractionDigits: 3 }));
    }
    return found;
  }

  function figure(caption, source, emptyText) {
    const box = document.createElement("figure");
    let picture;
    if (source) {
      picture = document.createElement("img");
      picture.src = source;
      picture.alt = altText(caption, "");
      picture.addEventListener("load", fitHeight);
    } else {
      picture = text("div", emptyText || "", "empty");
    }
    box.appendChild(picture);
    box.appendChild(text("figcaption", caption));
    return box;
  }

  function build() {
    // Once per trajectory: one figure per panel (their pictures change with the step), then the stills.
    pictures.replaceChildren();
    images = args.panels.map(function (caption) {
      const box = figure(caption, null, "");
      pictures.appendChild(box);
      return box;
    });
    (args.stills || []).forEach(function (still) {
      pictures.appendChild(figure(still.caption, still.picture));
    });
    document.documentElement.style.setProperty("--picture-width", (args.width || 256) + "px");
    scrub.max = String(args.frames.length - 1);
    label();
    player.setAttribute("aria-label", say("about"));
  }

  function draw() {
    const frame = args.frames[step];
    frame.pictures.forEach(function (source, index) {
      const box = images[index];
      const old = box.firstChild;
      if (source) {
        if (old.tagName === "IMG") {
          if (old.src !== source) old.src = source;
          old.alt = altText(args.panels[index], frame.label);
        } else {
          const picture = document.createElement("img");
          picture.alt = altText(args.panels[index], frame.label);
          picture.addEventListener("load", fitHeight);
          picture.src = source;
          box.replaceChild(picture, old);
        }
      } else if (old.tagName === "IMG") {
        box.replaceChild(text("div", frame.missing || "", "empty"), old);
      } else {
        old.textContent = frame.missing || "";
      }
    });
    where.replaceChildren();
    where.appendChild(text("strong", frame.label));
    const shown = facts(frame);
    if (shown.length) where.appendChild(document.createTextNode(" · " + say("noise", { facts: shown.join(", ") })));
    note.textContent = frame.note || "";
    scrub.value = String(step);
    scrub.setAttribute("aria-valuetext", frame.label);
    document.body.dataset.step = String(step);
    document.body.dataset.playing = timer === null ? "false" : "true";
    playButton.textContent = say(timer === null ? "play" : "pause");
    fitHeight();
  }

  // --- Moving ---

  function go(index) {
    step = Math.max(0, Math.min(args.frames.length - 1, index));
    draw();
    announce(stepWords());
    report();
  }

  function pause() {
    if (timer === null) return;
    clearInterval(timer);
    timer = null;
    draw();
    announce(say(step >= args.frames.length - 1 ? "ended" : "paused", { step: stepWords() }));
    report();
  }

  function play() {
    if (!args || args.frames.length < 2) return;
    if (step >= args.frames.length - 1) step = 0; // from the end, play again from the start
    clearInterval(timer);
    timer = setInterval(function () {
      if (step >= args.frames.length - 1) {
        pause();
        return;
      }
      step += 1;
      draw();
    }, 1000 / Number(speedSelect.value));
    draw();
    announce(say("playing", { step: args.frames[step].label, speed: speedSelect.selectedOptions[0].textContent }));
  }

  function toggle() {
    if (timer === null) play();
    else pause();
  }

  function stepBy(delta) {
    if (!args) return;
    if (timer !== null) {
      clearInterval(timer);
      timer = null;
    }
    go(step + delta);
  }

  playButton.addEventListener("click", toggle);
  backButton.addEventListener("click", function () { stepBy(-1); });
  forwardButton.addEventListener("click", function () { stepBy(1); });
  scrub.addEventListener("input", function () {
    if (timer !== null) {
      clearInterval(timer);
      timer = null;
    }
    go(Number(scrub.value));
  });
  speedSelect.addEventListener("change", function () {
    if (timer !== null) play(); // the new speed from now on
  });
  document.addEventListener("keydown", function (event) {
    if (!args || event.target === speedSelect) return;
    if (event.key === " " || event.key === "Spacebar") {
      event.preventDefault(); // no page scroll, no button press on top of ours
      toggle();
    } else if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
      event.preventDefault(); // the range input would step a second time
      stepBy(event.key === "ArrowLeft" ? -1 : 1);
    }
  });
  document.addEventListener("keyup", function (event) {
    // A focused button would take the space as a click of its own when the key comes up.
    if (event.key === " " && event.target.tagName === "BUTTON") event.preventDefault();
  });
  // A click anywhere in the player gives it the keys.
  player.addEventListener("mousedown", function (event) {
    if (!event.target.closest("button, input, select")) player.focus();
  });

  // --- Renders from Streamlit: a new trajectory starts over; the same one keeps its place ---

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
    const fresh = message.args;
    if (args !== null && fresh.id === args.id) return;
    clearInterval(timer);
    timer = null;
    args = fresh;
    step = Math.max(0, Math.min(args.frames.length - 1, args.start || 0));
    reported = step; // Python already knows where it starts
    const speed = reduceMotion ? "1" : String(args.speed || 4);
    if (Array.prototype.some.call(speedSelect.options, function (o) { return o.value === speed; })) {
      speedSelect.value = speed;
    }
    build();
    draw();
  });

  send("streamlit:componentReady", { apiVersion: 1 });
})();
