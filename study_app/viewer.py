"""The case reader as a Streamlit component: the image viewer, the answer bar and the keyboard.

A ``components.v2`` component runs in the page itself (no iframe), so it can size the image to the
window, keep the answer bar in view at any window size, take keys (R/S, 1-5, F) without a click into a
frame first, and swap to the prefetched next image as soon as the answer is stored. Its browser code
lives in ``assets/`` as plain JS and CSS. What it is given per case is only the opaque case id, the
image's authenticated URL and the next one's (or a whole slide's tile URL and layout, the same for
every slide), and the position in the reader's list.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable

import streamlit as st

ASSETS = Path(__file__).resolve().parent / "assets"
COMPONENT_KEY = "case-reader"


@lru_cache(maxsize=1)
def _component():
    return st.components.v2.component(
        "urcdm_case_reader", css=(ASSETS / "case_reader.css").read_text(), js=(ASSETS / "case_reader.js").read_text(),
        isolate_styles=False)


def case_reader(case_id: str, image_url: str, next_case: tuple[str, str | None] | None, index: int, total: int,
                confidence: bool, on_answer: Callable[[], None], slide: dict | None = None):
    """``next_case`` is (id, image URL) of the case that follows, prefetched and shown on answering
    (no URL: a whole slide, shown when the server confirms). ``slide``: a whole-slide case's tile
    layout and authenticated tile URL (``PreparedStudy.slide_view``), read in OpenSeadragon."""
    data = {"case": case_id, "image": None if slide else image_url, "slide": slide,
            "next_case": next_case[0] if next_case else None, "next": next_case[1] if next_case else None,
            "index": index, "total": total, "confidence": confidence}
    return _component()(key=COMPONENT_KEY, data=data, on_answer_change=on_answer)


def submitted_answer() -> dict | None:
    """The answer the bar just sent (inside the ``on_answer`` callback), or None."""
    state = st.session_state.get(COMPONENT_KEY)
    return None if state is None else state.get("answer")
