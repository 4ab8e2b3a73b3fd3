"""A pan/zoom image viewer for one case image, as a self-contained HTML component.

Hand-written rather than OpenSeadragon because nothing can be fetched from a CDN on the study's
(often offline, hospital) network and OpenSeadragon is not on PyPI; one image of at most 8192^2
needs no tile pyramid, only transforms. Wheel or +/- zooms about the cursor, dragging pans,
double-click toggles between fit and 1:1, so readers can inspect single nuclei at full resolution.
The only thing it carries is the image's opaque URL.
"""

from __future__ import annotations

import html

VIEWER_HEIGHT = 720

_TEMPLATE = """
<style>
  body { margin: 0; font-family: sans-serif; }
  #stage { position: relative; width: 100%; height: __HEIGHT__px; overflow: hidden; background: #f0f0f0;
           cursor: grab; touch-action: none; user-select: none; border-radius: 4px; }
  #stage.dragging { cursor: grabbing; }
  #case-image { position: absolute; left: 0; top: 0; transform-origin: 0 0; max-width: none; }
  #bar { position: absolute; right: 8px; top: 8px; display: flex; gap: 4px; }
  #bar button { font-size: 15px; min-width: 34px; padding: 4px 8px; border: 1px solid #999; border-radius: 4px;
                background: rgba(255,255,255,0.9); cursor: pointer; }
  #zoom { position: absolute; left: 8px; bottom: 8px; background: rgba(255,255,255,0.85); padding: 2px 6px;
          border-radius: 4px; font-size: 13px; }
</style>
<div id="stage">
  <img id="case-image" src="__SRC__" alt="case image" draggable="false">
  <div id="bar"><button id="zoom-in" title="zoom in">+</button><button id="zoom-out" title="zoom out">&minus;</button>
    <button id="fit" title="fit to frame">fit</button><button id="native" title="full resolution">1:1</button></div>
  <div id="zoom"></div>
</div>
<script>
(function () {
  const stage = document.getElementById("stage"), img = document.getElementById("case-image");
  const label = document.getElementById("zoom");
  let scale = 1, tx = 0, ty = 0, fitScale = 1, drag = null;
  function apply() {
    img.style.transform = `translate(${tx}px, ${ty}px) scale(${scale})`;
    label.textContent = `${Math.round(scale * 100)} %`;
  }
  function fit() {
    const w = stage.clientWidth, h = stage.clientHeight;
    fitScale = Math.min(w / img.naturalWidth, h / img.naturalHeight);
    scale = fitScale; tx = (w - img.naturalWidth * scale) / 2; ty = (h - img.naturalHeight * scale) / 2; apply();
  }
  function zoomAt(factor, cx, cy) {
    const next = Math.min(Math.max(scale * factor, fitScale * 0.5), 8);
    tx = cx - (cx - tx) * next / scale; ty = cy - (cy - ty) * next / scale; scale = next; apply();
  }
  function centre() { return [stage.clientWidth / 2, stage.clientHeight / 2]; }
  img.addEventListener("load", fit);
  if (img.complete && img.naturalWidth) fit();
  window.addEventListener("resize", fit);
  stage.addEventListener("wheel", (e) => {
    e.preventDefault();
    const r = stage.getBoundingClientRect();
    zoomAt(e.deltaY < 0 ? 1.2 : 1 / 1.2, e.clientX - r.left, e.clientY - r.top);
  }, { passive: false });
  stage.addEventListener("pointerdown", (e) => {
    if (e.target.tagName === "BUTTON") return;
    drag = [e.clientX - tx, e.clientY - ty]; stage.classList.add("dragging"); stage.setPointerCapture(e.pointerId);
  });
  stage.addEventListener("pointermove", (e) => { if (drag) { tx = e.clientX - drag[0]; ty = e.clientY - drag[1]; apply(); } });
  stage.addEventListener("pointerup", () => { drag = null; stage.classList.remove("dragging"); });
  stage.addEventListener("dblclick", (e) => {
    const r = stage.getBoundingClientRect();
    if (Math.abs(scale - fitScale) > 1e-6) fit(); else zoomAt(1 / scale, e.clientX - r.left, e.clientY - r.top);
  });
  document.getElementById("zoom-in").onclick = () => zoomAt(1.5, ...centre());
  document.getElementById("zoom-out").onclick = () => zoomAt(1 / 1.5, ...centre());
  document.getElementById("fit").onclick = fit;
  document.getElementById("native").onclick = () => zoomAt(1 / scale, ...centre());
})();
</script>
"""


def viewer_html(image_url: str, height: int = VIEWER_HEIGHT) -> str:
    return _TEMPLATE.replace("__HEIGHT__", str(int(height))).replace("__SRC__", html.escape(image_url, quote=True))
