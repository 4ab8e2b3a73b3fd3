"""A reader's way through the study, for the page and the answer route alike (no Streamlit here).

The case on screen is always the first case of the reader's order without a stored answer: the
database, never the browser or a server process, says where a reader is. ``reader_position`` is
what the case reader is given for it (``study_app.web.viewer``): the opaque case id, its authenticated
image (or a whole slide's tile layout), the next case to prefetch, the position, and where to post
the answer. ``record_answer`` stores what the answer bar sent.

Answers go to the study's own route (``POST /case-answer``, ``study_app.web.routes``) rather than through
Streamlit's websocket: the browser learns that an answer is stored from the reply itself, so it can
keep the case on screen until then, say at once when the server cannot be reached, and send the
same answer again when it is back (a repeated answer is recorded once).
"""

from __future__ import annotations

import time

from study_app.web.gate import Gate

ANSWER_ROUTE = "/case-answer"
MAX_COMMENT = 500


def answer_url(token: str) -> str:
    return f"{ANSWER_ROUTE}?session={token}"


def reader_position(gate: Gate, reader: str, token: str, now: float | None = None) -> dict:
    """The reader's current case as the case reader takes it, or ``{"done": True, ...}``.

    The case's reading time starts now unless it has started already (a new page restarts it
    itself, ``study_app.web.app``)."""
    prepared, study = gate.prepared, gate.prepared.study
    cases = gate.reader_cases(reader)
    index = gate.answers.first_unanswered(reader, [case.id for case in cases])
    if index is None:
        return {"done": True, "total": len(cases), "answer_url": answer_url(token)}
    case = cases[index]
    gate.answers.mark_shown(reader, case.id, time.time() if now is None else now, replace=False)
    following = cases[index + 1] if index + 1 < len(cases) else None
    slide = prepared.slide_view(case, token)
    return {"case": case.id, "image": None if slide else prepared.image_url_path(case, token), "slide": slide,
            # A whole slide is not prefetched: its tiles are fetched as the reader pans and zooms.
            "next_case": following.id if following else None,
            "next": prepared.image_url_path(following, token) if following and not following.whole_slide else None,
            "index": index, "total": len(cases), "confidence": study.confidence, "answer_url": answer_url(token),
            "magnification": study.arm(case.arm).magnification if study.show_magnification else None}


def record_answer(gate: Gate, reader: str, given, now: float | None = None) -> str | None:
    """Store what the answer bar sent; returns a message for the reader, or None when all is well.

    Only the case on screen (the reader's first unanswered case) is recorded, with a complete answer,
    and a second answer to a case (a double press, a resend after a lost reply, a stale second tab)
    never replaces the first.
    """
    if not isinstance(given, dict) or given.get("case") not in gate.assigned(reader):
        return "That case is not one of yours; the page has been brought up to date."
    answer, confidence = given.get("answer"), given.get("confidence") if gate.prepared.study.confidence else None
    if answer not in ("real", "synthetic") or (gate.prepared.study.confidence and confidence not in (1, 2, 3, 4, 5)):
        return "Choose real or synthetic, and how sure you are (1-5)."
    now = time.time() if now is None else now
    case = gate.prepared.case(given["case"])
    order = [c.id for c in gate.reader_cases(reader)]
    current = gate.answers.first_unanswered(reader, order)
    if case.id != (order[current] if current is not None else None) and gate.answers.get(reader, case.id) is None:
        # Cases are answered in the reader's order, the one on screen first: a later case's image can be
        # fetched (it is prefetched), but not answered before it has been shown.
        return "That is not the case on screen; the page has been brought up to date."
    shown_at = gate.answers.shown_at(reader, case.id) or now
    new, stored = gate.answers.record(
        reader, case.id, case.arm, case.truth, answer, confidence, min(shown_at, now), now, case.image_id,
        flagged=given.get("flagged") is True, comment=str(given.get("comment") or "")[:MAX_COMMENT],
        max_zoom=_zoom(given.get("max_zoom")))
    if not new and (stored.answer != answer or stored.confidence != confidence):
        return "That case was already answered; the first answer was kept."
    return None


def _zoom(value) -> float | None:
    """The reader's furthest zoom relative to the fitted image, if plausible (it comes from the client)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1e4:
        return float(value)
    return None
