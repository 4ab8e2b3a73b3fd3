"""Errors that are the user's to fix (bad path, corrupt file, bad config, no space).

The CLIs print these as one ``error:`` line and exit 2; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""


class SlideError(UserError):
    """A slide or image cannot be opened or read."""


class OutputExistsError(UserError):
    """An output path exists and the user did not ask to overwrite it."""
