"""CSV cells that a spreadsheet would run, made inert, and read back as they were (pure).

Exports carry text that readers typed (comments) and that organisers chose (reader ids, arm names).
A cell beginning with ``=``, ``+``, ``-`` or ``@`` is a formula to Excel, LibreOffice and Google
Sheets, and a leading tab or carriage return can smuggle one past a check: a comment such as
``=HYPERLINK("http://...")`` would run on the organiser's computer. OWASP's advice for CSV
injection is to prefix such a cell with a single quote, which spreadsheets show as text.

The prefix is reversible, so our own readers (``urcdm-study score`` and ``mrmc``) see the text the
reader typed: ``neutralise`` also prefixes a cell that already starts with quotes before a trigger,
and ``restore`` removes exactly one. Plain numbers (``-0.25``, ``+3``) are left alone: a spreadsheet
reads them as numbers, not formulas, and our numeric columns must stay numeric.
"""

from __future__ import annotations

import re

_NEEDS_QUOTE = re.compile(r"'*[=+\-@\t\r]")
_QUOTED = re.compile(r"'+[=+\-@\t\r]")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def neutralise(value):
    """``value`` as it may go into a CSV cell: text that a spreadsheet would run gets a leading quote."""
    if isinstance(value, str) and _NEEDS_QUOTE.match(value) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def restore(text: str) -> str:
    """The cell as it was before ``neutralise`` (one leading quote removed where it added one)."""
    if _QUOTED.match(text) and not _NUMBER.fullmatch(text[1:]):
        return text[1:]
    return text


def neutralised_row(values) -> list:
    return [neutralise(value) for value in values]
