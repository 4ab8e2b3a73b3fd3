// Slides side by side; with "synchronise" on, moving one moves the others to the same place and the
// same magnification in microns (level-0 pixels where a slide records no mpp).
"use strict";

const panels = document.getElementById("panels");
const syncBox = document.getElementById("sync");
const viewers = [];
let following = false; // true while we move the other viewers, so their events are not echoed back
// Nothing is synchronised until every slide is open and the first view placed: before that, the
// viewers' own opening moves would each lead the others in turn, and the view drifted for seconds.
let placed = false;
const started = performance.now();
const status = document.getElementById("status");
let served = null; // slides.json as first read: a restarted server must serve the same slides

// Microns when every slide records its mpp; otherwise all are synchronised in level-0 pixels.
function micronsPerPixel(slide) { return viewers.every((entry) => entry.slide.mpp) ? slide.mpp : 1; }

function describeScale(entry) {
  const viewport = entry.viewer.viewport;
  const screenPerImage = viewport.viewportToImageZoom(viewport.getZoom(true));
  const zoomText = `${(screenPerImage * 100).toFixed(screenPerImage < 0.1 ? 2 : 0)} %`;
  if (!entry.slide.mpp) return `${zoomText} of full resolution`;
  const micronsPerScreenPixel = entry.slide.mpp / screenPerImage;
  // A 40x objective images about 0.25 um per pixel: the equivalent objective is 10 / (um per pixel).
  return `${micronsPerScreenPixel.toPrecision(3)} µm/px, ≈${(10 / micronsPerScreenPixel).toPrecision(2)}×  (${zoomText})`;
}

function follow(leader) {
  const lead = leader.viewer.viewport;
  const centre = lead.viewportToImageCoordinates(lead.getCenter(true));
  const leadMpp = micronsPerPixel(leader.slide);
  const screenPerMicron = lead.viewportToImageZoom(lead.getZoom(true)) / leadMpp;
  following = true;
  for (const entry of viewers) {
    if (entry === leader || !entry.opened) continue;
    const mpp = micronsPerPixel(entry.slide);
    const viewport = entry.viewer.viewport;
    viewport.zoomTo(viewport.imageToViewportZoom(screenPerMicron * mpp), null, true);
    viewport.panTo(viewport.imageToViewportCoordinates(centre.x * leadMpp / mpp, centre.y * leadMpp / mpp), true);
    entry.scale.textContent = describeScale(entry);
  }
  following = false;
}

// The first view: one magnification for all, at which the box spanning every slide (from their
// common origin) fits each panel whole, centred on that box.
function placeFirstView() {
  const extent = { x: 0, y: 0 };
  for (const entry of viewers) {
    const mpp = micronsPerPixel(entry.slide);
    extent.x = Math.max(extent.x, entry.slide.width * mpp);
    extent.y = Math.max(extent.y, entry.slide.height * mpp);
  }
  let screenPerMicron = Infinity;
  for (const entry of viewers) {
    const size = entry.viewer.viewport.getContainerSize();
    screenPerMicron = Math.min(screenPerMicron, size.x / extent.x, size.y / extent.y);
  }
  following = true;
  for (const entry of viewers) {
    const mpp = micronsPerPixel(entry.slide);
    const viewport = entry.viewer.viewport;
    viewport.zoomTo(viewport.imageToViewportZoom(screenPerMicron * mpp), null, true);
    viewport.panTo(viewport.imageToViewportCoordinates(extent.x / 2 / mpp, extent.y / 2 / mpp), true);
    entry.scale.textContent = describeScale(entry);
  }
  following = false;
}

function markFirstView() {
  if (document.body.dataset.firstViewMs) return;
  const allLoaded = viewers.every((entry) => entry.opened && entry.viewer.world.getItemAt(0).getFullyLoaded());
  if (allLoaded) document.body.dataset.firstViewMs = String(Math.round(performance.now() - started));
}

function addPanel(slide, index) {
  const panel = document.createElement("section");
  panel.className = "panel";
  const size = `${slide.width.toLocaleString()} × ${slide.height.toLocaleString()} px`;
  const mpp = slide.mpp ? `${slide.mpp} µm/px` : "mpp unknown";
  panel.innerHTML = `<div class="caption"><span class="name"></span><span class="size">${size}, ${mpp}</span>` +
                    `<span class="scale"></span></div><div class="viewer" id="viewer-${index}"></div>`;
  panel.querySelector(".name").textContent = slide.name;
  panel.querySelector(".caption").title = `${slide.name}: ${size}, ${mpp}`;
  panels.appendChild(panel);
  return panel;
}

// Every panel is in the page before any viewer measures its own: a viewer made while the grid still
// had one column would find its panel shrunk later, and rescale its view when it noticed.
function addViewer(slide, index, panel) {
  const viewer = OpenSeadragon({
    id: `viewer-${index}`, prefixUrl: "osd/images/", tileSources: slide.dzi,
    showNavigator: true, navigatorPosition: "BOTTOM_RIGHT", maxZoomPixelRatio: 4,
    visibilityRatio: 0.2, crossOriginPolicy: false, timeout: 60000,
    // The 2D canvas draws plain image tiles as well as WebGL does, and hospital desktops and remote
    // sessions often have no GPU, where WebGL falls back to a slow software renderer.
    drawer: "canvas",
  });
  const entry = { slide, viewer, opened: false, scale: panel.querySelector(".scale") };
  viewers.push(entry);
  viewer.addHandler("open", () => {
    entry.opened = true;
    viewer.world.getItemAt(0).addHandler("fully-loaded-change", markFirstView);
    entry.scale.textContent = describeScale(entry);
    if (viewers.every((other) => other.opened)) {
      if (syncBox.checked) placeFirstView();
      placed = true;
    }
  });
  viewer.addHandler("open-failed", (event) => { entry.scale.textContent = `cannot open: ${event.message}`; });
  viewer.addHandler("tile-load-failed", (event) => tileFailed(event.tile));
  viewer.addHandler("viewport-change", () => {
    entry.scale.textContent = describeScale(entry);
    if (placed && !following && syncBox.checked) follow(entry);
  });
}

// OpenSeadragon marks a tile that failed to load as missing and never asks for it again. When the
// server goes away (an SSH tunnel drops, `urcdm view` is restarted) the panels would keep the coarser
// level where finer tiles failed, which looks like blur: the very artefact a reader of synthetic
// slides looks for. So a failure is reported, the server is polled, and once it answers with the same
// slides the failed tiles are asked for again.
const failedTiles = new Set();
let checking = false;
let lost = false;

function tileFailed(tile) {
  failedTiles.add(tile);
  if (!checking) checkServer();
}

async function checkServer() {
  checking = true;
  let answer = null;
  try {
    const response = await fetch("slides.json", { cache: "no-store" });
    if (response.ok) answer = await response.text();
  } catch {
    // refused or unreachable: the server is gone
  }
  if (answer === null) {
    lost = true;
    status.textContent = "Server not answering (is `urcdm view` running?): finer tiles will load when it is back";
    setTimeout(checkServer, 2000);
    return;
  }
  checking = false;
  if (answer !== served) {
    status.textContent = "The server now serves other slides: reload the page.";
    return;
  }
  if (!lost) {
    status.textContent = `${failedTiles.size} tile(s) could not be read; the server's output says why.`;
    return;
  }
  lost = false;
  status.textContent = "";
  for (const tile of failedTiles) tile.exists = true;
  failedTiles.clear();
  for (const entry of viewers) {
    entry.viewer.world.update(true); // as after a move of the view: asks for every tile it lacks
    entry.viewer.forceRedraw();
  }
}

fetch("slides.json").then((response) => response.text()).then((text) => {
  served = text;
  const slides = JSON.parse(text);
  const made = slides.map(addPanel);
  slides.forEach((slide, index) => addViewer(slide, index, made[index]));
  const unknown = slides.filter((slide) => !slide.mpp).length;
  if (unknown && slides.length > 1) {
    document.getElementById("note").textContent =
      `${unknown} of ${slides.length} slides record no mpp: they are synchronised in pixels, not microns`;
  }
  window.urcdmViewers = viewers;
});
