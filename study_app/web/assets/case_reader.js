// The case reader: one pan/zoom image, the answer bar and the keyboard, mounted once and updated per case.
// Streamlit gives the first case (`data`); after that each answer is posted to the study's answer route,
// whose reply confirms it is stored and gives the next case, so the page goes on without a Streamlit run
// and survives a server restart: until the reply, the case stays on screen and the bar stays locked; if
// the server cannot be reached, the page says so at once and sends the answer again when it is back.
// Crops are shown by the hand-written viewer below: one image of at most a few thousand pixels needs
// transforms, not a tile pyramid. Whole slides are read in OpenSeadragon, which the study server
// itself serves (/viewer-lib/): nothing may come from a CDN on a hospital network.

const HEALTH_URL = "/_stcore/health";
const PROBE_EVERY_MS = 1000;   // how soon a vanished server is noticed while the reader reads
const PROBE_TIMEOUT_MS = 3000;
const ANSWER_TIMEOUT_MS = 10000;
const RETRY_EVERY_MS = 1000;
const LOST = "The study server cannot be reached. Your place is kept: this case stays on screen, and an answer " +
  "you give is sent when the server is back. There is no need to reload the page.";
const ENDED = "Your session has ended, so this answer could not be stored. Reload the page and log in again.";

const KEYS_HELP = (confidence) => confidence
  ? "Keys: <kbd>R</kbd> real · <kbd>S</kbd> synthetic, with <kbd>1</kbd>–<kbd>5</kbd> how sure (1 guessing, 5 certain), " +
    "in either order · <kbd>F</kbd> flag · <kbd>+</kbd>/<kbd>−</kbd> zoom · <kbd>0</kbd> fit · double-click 1:1"
  : "Keys: <kbd>R</kbd> real · <kbd>S</kbd> synthetic · <kbd>F</kbd> flag · <kbd>+</kbd>/<kbd>−</kbd> zoom · " +
    "<kbd>0</kbd> fit · double-click 1:1";

function element(tag, className, parent, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function buildViewer(root) {
  const stage = element("div", "urcdm-stage", root);
  const img = element("img", "", stage);
  img.alt = "case image"; img.draggable = false; img.id = "case-image";
  const tools = element("div", "urcdm-tools", stage);
  const zoomLabel = element("div", "urcdm-zoom", stage);
  const v = { stage, img, zoomLabel, scale: 1, tx: 0, ty: 0, fitScale: 1, drag: null, maxZoom: 0, slide: null };
  v.apply = () => {
    // The furthest zoom relative to the image fitted to the stage: 1 for a reader who never zoomed in.
    if (!v.slide) v.maxZoom = Math.max(v.maxZoom, v.scale / v.fitScale);
    img.style.transform = `translate(${v.tx}px, ${v.ty}px) scale(${v.scale})`;
    img.style.imageRendering = v.scale >= 1 ? "pixelated" : "auto";  // 1:1 and above: crisp source pixels
    zoomLabel.textContent = `${Math.round(v.scale * 100)} %`;
  };
  v.fit = () => {
    if (!img.naturalWidth) return;
    const w = stage.clientWidth, h = stage.clientHeight;
    v.fitScale = Math.min(w / img.naturalWidth, h / img.naturalHeight);
    v.scale = v.fitScale; v.tx = (w - img.naturalWidth * v.scale) / 2; v.ty = (h - img.naturalHeight * v.scale) / 2;
    v.apply();
  };
  v.zoomAt = (factor, cx, cy) => {
    const next = Math.min(Math.max(v.scale * factor, v.fitScale * 0.5), 16);
    v.tx = cx - (cx - v.tx) * next / v.scale; v.ty = cy - (cy - v.ty) * next / v.scale; v.scale = next; v.apply();
  };
  v.centre = () => [stage.clientWidth / 2, stage.clientHeight / 2];
  v.native = (cx, cy) => v.zoomAt(1 / v.scale, cx, cy);  // one source pixel per screen (CSS) pixel
  // One set of actions for the tool buttons and the keys, on whichever viewer shows the case.
  v.act = (action) => {
    if (v.slide) return v.slide[action]();
    if (action === "in") v.zoomAt(1.5, ...v.centre());
    else if (action === "out") v.zoomAt(1 / 1.5, ...v.centre());
    else if (action === "fit") v.fit();
    else v.native(...v.centre());
  };
  for (const [label, title, action] of [["+", "zoom in (+)", "in"], ["−", "zoom out (−)", "out"],
      ["fit", "fit to frame (0)", "fit"], ["1:1", "one image pixel per screen pixel", "native"]]) {
    const button = element("button", "", tools, label);
    button.title = title; button.onclick = () => v.act(action);
  }
  v.osdBox = element("div", "urcdm-osd", stage);
  stage.addEventListener("wheel", (e) => {
    if (v.slide) return;  // OpenSeadragon zooms the slide itself
    e.preventDefault();
    const r = stage.getBoundingClientRect();
    v.zoomAt(e.deltaY < 0 ? 1.2 : 1 / 1.2, e.clientX - r.left, e.clientY - r.top);
  }, { passive: false });
  stage.addEventListener("pointerdown", (e) => {
    if (e.target.tagName === "BUTTON" || v.slide) return;
    v.drag = [e.clientX - v.tx, e.clientY - v.ty]; stage.classList.add("dragging"); stage.setPointerCapture(e.pointerId);
  });
  stage.addEventListener("pointermove", (e) => {
    if (v.drag) { v.tx = e.clientX - v.drag[0]; v.ty = e.clientY - v.drag[1]; v.apply(); }
  });
  stage.addEventListener("pointerup", () => { v.drag = null; stage.classList.remove("dragging"); });
  stage.addEventListener("dblclick", (e) => {
    if (v.slide) return;
    const r = stage.getBoundingClientRect();
    if (Math.abs(v.scale - v.fitScale) > 1e-6) v.fit(); else v.native(e.clientX - r.left, e.clientY - r.top);
  });
  return v;
}

let osdLoading = null;
function loadOpenSeadragon() {
  osdLoading = osdLoading || new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = "/viewer-lib/openseadragon.min.js";
    script.onload = () => resolve(window.OpenSeadragon); script.onerror = reject;
    document.head.appendChild(script);
  });
  return osdLoading;
}

// OpenSeadragon marks a tile that failed to load as missing for good. Tiles lost while the server was
// away would leave the coarser level in view: blur that a reader could take for a synthetic slide's.
// They are asked for again once the server answers.
function retryFailedTiles(v) {
  if (!v.osd || !v.failedTiles.size) return;
  for (const tile of v.failedTiles) tile.exists = true;
  v.failedTiles.clear();
  v.osd.world.update(true);  // as after a move of the view: asks for every tile it lacks
  v.osd.forceRedraw();
}

// A whole slide in OpenSeadragon: its tiles come one by one from the study's authenticated route.
function showSlide(v, slide, caseId, onShown, onFailed) {
  v.img.classList.remove("shown"); v.img.dataset.case = "";
  v.osdBox.classList.add("shown"); v.osdBox.dataset.case = "";
  v.maxZoom = 0;
  loadOpenSeadragon().then((OSD) => {
    if (!v.osd) {
      v.osd = OSD({ element: v.osdBox, prefixUrl: "/viewer-lib/images/", showNavigationControl: false,
                    showNavigator: true, navigatorPosition: "TOP_RIGHT", maxZoomPixelRatio: 4,
                    visibilityRatio: 0.2, drawer: "canvas", keyboardShortcuts: false });
      v.failedTiles = new Set();
      v.osd.addHandler("tile-load-failed", (e) => v.failedTiles.add(e.tile));
      v.osd.addHandler("zoom", (e) => {
        if (!v.slide) return;
        const zoom = v.osd.viewport.viewportToImageZoom(e.zoom);  // screen pixels per slide pixel
        v.maxZoom = Math.max(v.maxZoom, e.zoom / v.osd.viewport.getHomeZoom());  // relative to the whole slide in view
        v.zoomLabel.textContent = `${zoom < 0.1 ? (zoom * 100).toFixed(1) : Math.round(zoom * 100)} %`;
      });
      const vp = () => v.osd.viewport;
      v.slideActions = { in: () => vp().zoomBy(1.5), out: () => vp().zoomBy(1 / 1.5), fit: () => vp().goHome(),
                         native: () => vp().zoomTo(vp().imageToViewportZoom(1)) };
    }
    v.slide = v.slideActions;
    v.failedTiles.clear();  // the previous slide's
    v.osd.addOnceHandler("open", () => {
      v.osdBox.dataset.case = caseId;
      v.maxZoom = 1;
      onShown();
    });
    v.osd.addOnceHandler("open-failed", onFailed);
    v.osd.open({ width: slide.width, height: slide.height, tileSize: slide.tile_size, tileOverlap: slide.overlap,
                 getTileUrl: (level, x, y) => `${slide.tiles}${level}/${x}_${y}${slide.suffix}${slide.query}` });
  }).catch(onFailed);
}

function buildBar(root, view, confidence) {
  const bar = element("div", "urcdm-bar", root);
  view.progress = element("div", "urcdm-progress", bar);
  const scale = element("div", "urcdm-scale", bar);
  view.buttons = [];
  const add = (answer, level, label, title) => {
    const button = element("button", `${answer}${level ? "" : " wide"}`, scale, label);
    button.title = title; button.dataset.answer = answer; button.dataset.confidence = level || "";
    button.onclick = () => view.submit(answer, level || null);
    view.buttons.push(button);
  };
  if (confidence) {
    // One click answers both questions: a bipolar scale from "surely real" to "surely synthetic".
    element("span", "urcdm-side", scale, "Real");
    for (const level of [5, 4, 3, 2, 1]) add("real", level, String(level), `real, confidence ${level} of 5`);
    element("span", "urcdm-gap", scale);
    for (const level of [1, 2, 3, 4, 5]) add("synthetic", level, String(level), `synthetic, confidence ${level} of 5`);
    element("span", "urcdm-side", scale, "Synthetic");
  } else {
    add("real", 0, "Real (R)", "real"); add("synthetic", 0, "Synthetic (S)", "synthetic");
  }
  view.flag = element("button", "urcdm-flag", bar, "⚑ Flag");
  view.flag.title = "flag this case for the organiser (F)";
  view.flag.onclick = () => view.toggleFlag();
  view.comment = element("input", "urcdm-comment", bar);
  view.comment.placeholder = "Comment (optional)"; view.comment.maxLength = 500;
  view.message = element("div", "urcdm-message", bar);
  view.message.setAttribute("role", "status");
  // Over the image, not in the bar: it must be seen at once, and must not move the bar.
  view.status = element("div", "urcdm-status", view.viewer.stage);
  view.status.setAttribute("role", "alert");
  element("div", "urcdm-keys", bar).innerHTML = KEYS_HELP(confidence);
  view.bar = bar;
}

function layout(view) {
  // The answer bar must stay in the window whatever its size: the image gets what is left above it.
  const top = view.viewer.stage.getBoundingClientRect().top;
  const room = window.innerHeight - top - view.bar.offsetHeight - 12;
  view.viewer.stage.style.height = `${Math.max(200, Math.floor(room))}px`;
  view.viewer.fit();
}

function createView(root) {
  const view = { pending: { answer: null, confidence: null }, flagged: false, caseId: null, prefetched: null,
                 inflight: null, sending: false, offline: false, stored: new Set(), finished: false };
  root.classList.add("urcdm-reader");
  view.viewer = buildViewer(root);
  view.pick = () => {
    for (const b of view.buttons) {
      const sameAnswer = b.dataset.answer === view.pending.answer;
      const sameLevel = b.dataset.confidence === String(view.pending.confidence);
      b.classList.toggle("picked", view.data.confidence
        ? (sameAnswer && (sameLevel || view.pending.confidence === null)) || (sameLevel && view.pending.answer === null)
        : sameAnswer);
    }
  };
  view.say = (text) => { view.message.textContent = text; };
  view.lock = () => { view.busy = true; root.classList.add("busy"); };
  view.unlock = () => {
    view.busy = false; view.revealing = false; root.classList.remove("busy"); window.__urcdmConfirmedAt = performance.now();
  };
  view.submit = (answer, confidence) => {
    if (view.busy || view.finished) return;
    if (answer) view.pending.answer = answer;
    if (confidence) view.pending.confidence = confidence;
    view.pick();
    const { answer: a, confidence: c } = view.pending;
    if (view.data.confidence && (a === null || c === null)) {
      view.say(a === null ? `Confidence ${c}: now press R (real) or S (synthetic).`
                          : `${a === "real" ? "Real" : "Synthetic"}: now choose how sure you are, 1–5.`);
      return;
    }
    view.lock(); view.say(view.offline ? "Your answer is kept here and will be sent when the server is back." : "");
    window.__urcdmAnsweredAt = performance.now();
    view.inflight = { case: view.caseId, answer: a, confidence: c, flagged: view.flagged,
                      comment: view.comment.value.trim(), max_zoom: view.viewer.maxZoom || null };
    view.send();
  };
  // The answer goes to the study's route; only its reply (stored, and the next case) moves the page on.
  // A lost reply is sent again: the server keeps the first answer to a case and records it once.
  view.send = () => {
    const payload = view.inflight;
    if (!payload || view.sending) return;
    view.sending = true;
    const abort = new AbortController(), timer = setTimeout(() => abort.abort(), ANSWER_TIMEOUT_MS);
    fetch(view.data.answer_url, { method: "POST", headers: { "Content-Type": "application/json" }, cache: "no-store",
                                  body: JSON.stringify(payload), signal: abort.signal })
      .then((r) => (r.status === 403 ? { ended: true } : r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`))))
      .then((reply) => {
        clearTimeout(timer); view.sending = false;
        if (reply.ended) { view.inflight = null; view.say(ENDED); return; }
        window.__urcdmStoredAt = performance.now();  // for benchmarks/bench_study_readers.py
        view.reachable();
        view.inflight = null; view.stored.add(payload.case);
        view.show(reply.position);
        if (reply.message) view.say(reply.message);
      })
      .catch(() => {
        clearTimeout(timer); view.sending = false;
        view.unreachable();
        setTimeout(view.send, RETRY_EVERY_MS);
      });
  };
  // Streamlit opens its own "Connection error" dialog a few seconds later, which makes the whole page inert
  // (no click reaches the case or the bar). On the reader's page it is hidden (study_app.app) and closed
  // with its own Close button as soon as it appears: the banner above says what a reader needs to know.
  view.dismissDialogs = () => {
    for (const close of document.querySelectorAll('[data-testid="stDialog"] button[aria-label="Close"]')) close.click();
  };
  view.dialogs = new MutationObserver(view.dismissDialogs);
  view.unreachable = () => {
    if (view.offline) return;
    view.offline = true; root.classList.add("offline"); view.status.textContent = LOST;
    view.dialogs.observe(document.body, { childList: true, subtree: true });
  };
  view.reachable = () => {
    if (!view.offline) return;
    view.dialogs.disconnect();
    view.offline = false; root.classList.remove("offline"); view.status.textContent = "";
    retryFailedTiles(view.viewer);
    view.say(view.inflight ? "Connected again: sending your answer." : "Connected again.");
    view.send();
  };
  // While the reader reads, a small request each second tells at once whether the server is still there.
  view.probe = () => {
    const abort = new AbortController(), timer = setTimeout(() => abort.abort(), PROBE_TIMEOUT_MS);
    fetch(HEALTH_URL, { cache: "no-store", signal: abort.signal })
      .then((r) => { clearTimeout(timer); (r.ok ? view.reachable : view.unreachable)(); })
      .catch(() => { clearTimeout(timer); view.unreachable(); });
  };
  view.reset = (caseId) => {
    view.caseId = caseId;
    view.pending = { answer: null, confidence: null }; view.flagged = false;
    view.flag.classList.remove("on"); view.comment.value = ""; view.say(""); view.pick();
  };
  view.reveal = (src, caseId) => {
    const img = view.viewer.img;
    img.classList.remove("shown"); img.dataset.case = "";
    view.viewer.slide = null; view.viewer.osdBox.classList.remove("shown");
    img.onload = () => img.decode().catch(() => {}).then(() => {
      view.viewer.maxZoom = 0; view.viewer.fit(); img.classList.add("shown"); img.dataset.case = caseId;
      // Timing marks for benchmarks/bench_study_readers.py: the frame that paints the image.
      requestAnimationFrame(() => { window.__urcdmShownAt = performance.now(); });
      view.unlock();
    });
    img.onerror = () => view.say("The image could not be loaded: your session may have ended. Reload the page.");
    img.src = src;
  };
  view.toggleFlag = () => { view.flagged = !view.flagged; view.flag.classList.toggle("on", view.flagged); };
  view.onKey = (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || ["INPUT", "TEXTAREA"].includes(e.target.tagName)) return;
    const key = e.key.toLowerCase();
    const v = view.viewer;
    if (key === "r" || key === "s") view.submit(key === "r" ? "real" : "synthetic", null);
    else if (view.data.confidence && ["1", "2", "3", "4", "5"].includes(key)) view.submit(null, Number(key));
    else if (key === "f") view.toggleFlag();
    else if (key === "+" || key === "=") v.act("in");
    else if (key === "-") v.act("out");
    else if (key === "0") v.act("fit");
    else return;
    // Ours alone: Streamlit's own shortcut for R is "rerun the app", which would delay the answer.
    e.preventDefault(); e.stopImmediatePropagation();
  };
  view.finish = (data) => {
    view.finished = true; view.lock();
    view.progress.textContent = `All ${data.total} cases answered`;
    view.viewer.img.classList.remove("shown"); view.viewer.osdBox.classList.remove("shown");
    view.status.textContent = `Thank you: all ${data.total} cases are answered. You can close this page.`;
    view.setTrigger("finished", true);  // Streamlit's page says so too, when it can be reached
  };
  // `data`: the case to show, from Streamlit (first case, a rerun) or from an answer's reply.
  view.show = (data) => {
    if (!view.bar) { view.data = data; buildBar(root, view, data.confidence); }
    if (data.done) { view.data = { ...view.data, ...data }; view.finish(data); return; }
    // A Streamlit run that began before an answer's reply can bring a case already stored: not shown again.
    if (view.stored.has(data.case) || view.finished) return;
    const fresh = data.case !== view.caseId;
    view.data = data;
    view.progress.textContent = `Case ${data.index + 1} of ${data.total}` +
      (data.magnification ? ` · magnification ${data.magnification}` : "");
    if (fresh) {
      view.lock(); view.revealing = true;  // the bar unlocks when the case is painted
      view.reset(data.case);
      if (data.slide) {
        showSlide(view.viewer, data.slide, data.case, () => {
          requestAnimationFrame(() => { window.__urcdmShownAt = performance.now(); });
          view.unlock();
        }, () => view.say("The slide could not be opened: your session may have ended. Reload the page."));
      } else {
        view.reveal(data.image, data.case);
      }
    } else if (view.busy && !view.inflight && !view.offline && !view.revealing) {
      view.unlock();  // a reply that kept this case on screen (its message says why): it may be answered again
    }
    if (data.next !== view.prefetchedUrl) {
      // The next case is fetched and decoded now, so its reply shows it without waiting for the network.
      view.prefetchedUrl = data.next; view.prefetched = null;
      if (data.next) { const next = new Image(); next.src = data.next; next.decode().catch(() => {}); view.prefetched = next; }
    }
    view.pick();
    layout(view);
  };
  return view;
}

export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  let view = parentElement.__urcdmView;
  if (!view) view = parentElement.__urcdmView = createView(parentElement);
  view.setTrigger = setTriggerValue;
  view.show(data);
  view.onResize = view.onResize || (() => layout(view));
  // The same function objects each time, so a second mount adds no second listener.
  // Capture phase on window: the reader's keys are seen before any of the page's own handlers.
  window.addEventListener("keydown", view.onKey, true);
  window.addEventListener("resize", view.onResize);
  view.watch = view.watch || setInterval(view.probe, PROBE_EVERY_MS);
  return () => {
    window.removeEventListener("keydown", view.onKey, true); window.removeEventListener("resize", view.onResize);
    clearInterval(view.watch); view.watch = null;
  };
}
