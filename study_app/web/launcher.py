"""Streamlit's own command line with one change: the browser is not told where the app lives.

Streamlit sends every new session the absolute file-system path of the app's entry script (the
``main_script_path`` of its NewSession message). A reader has no business learning the server's
folders, which can name the study, the project or a person, so the path is blanked before the
message leaves. ``python -m study_app.web.launcher run ENTRY ...`` takes ``streamlit run``'s options.
"""

from __future__ import annotations

import sys

from streamlit.runtime.app_session import AppSession
from streamlit.web import cli


def _hide_script_path(create_message):
    def create(self, *args, **kwargs):
        message = create_message(self, *args, **kwargs)
        message.new_session.main_script_path = ""
        return message

    return create


def main() -> None:
    # A private method of Streamlit's: if a release renames it, refuse to serve rather than leak.
    create_message = getattr(AppSession, "_create_new_session_message", None)
    if create_message is None:
        sys.exit("error: this Streamlit release cannot be kept from sending the app's server path; "
                 "install the Streamlit version in pyproject.toml")
    AppSession._create_new_session_message = _hide_script_path(create_message)
    sys.exit(cli.main(prog_name="streamlit"))


if __name__ == "__main__":
    main()
