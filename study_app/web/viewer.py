"""The case reader as a Streamlit component: the image viewer, the answer bar and the keyboard.

A ``components.v2`` component runs in the page itself (no iframe), so it can size the image to the
window, keep the answer bar in view at any window size, and take keys (R/S, 1-5, F) without a click
into a frame first. Its browser code lives in ``assets/`` as plain JS and CSS. It is given the
reader's position (``study_app.web.reading.reader_position``): only the opaque case id, the image's
authenticated URL and the next one's (or a whole slide's tile URL and layout, the same for every
slide), the position in the reader's list, and where to post the answer. From there it goes on by
itself: each answer's reply from the study's route carries the next position.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import streamlit as st

ASSETS = Path(__file__).resolve().parent / "assets"
COMPONENT_KEY = "case-reader"


@lru_cache(maxsize=1)
def _component():
    return st.components.v2.component(
        "urcdm_case_reader", css=(ASSETS / "case_reader.css").read_text(), js=(ASSETS / "case_reader.js").read_text(),
        isolate_styles=False)


def case_reader(position: dict):
    """Mount (or update) the case reader at ``position``; when the browser reports the study
    finished, Streamlit runs the page again, which then thanks the reader."""
    return _component()(key=COMPONENT_KEY, data=position, on_finished_change=lambda: None)
