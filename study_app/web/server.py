"""Starting the Streamlit server for a prepared study, with the settings a reader study needs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from study_app.preparation.prepared import PreparedStudy
from urcdm.clikit import check_port_free, server_urls


def streamlit_command(entry: Path, port: int, address: str) -> list[str]:
    return [
        sys.executable, "-m", "study_app.web.launcher", "run", str(entry),  # streamlit run, minus the server path
        "--server.port", str(port), "--server.address", address, "--server.headless", "true",
        "--server.enableStaticServing", "false",     # case images go through study_app.web.routes, to their readers only
        "--server.fileWatcherType", "none",
        # A full gc.collect() after every run holds back the run's last messages (~300 ms with torch
        # loaded), i.e. every answer's confirmation; Python's own collector still runs as usual.
        "--runner.postScriptGC", "false",
        "--client.showErrorDetails", "none",         # a traceback would show server paths to readers
        "--client.toolbarMode", "minimal",
        "--global.developmentMode", "false",
        "--browser.gatherUsageStats", "false",        # hospital networks: no calls home
        # nor Streamlit's own banner: on 0.0.0.0 or :: it asks a web service for this computer's
        # public address (checkip.amazonaws.com); our own lines say where the study is
        "--logger.hideWelcomeMessage", "true",
    ]


def serve(prepared: PreparedStudy, port: int, address: str) -> int:
    """Replace this process with the Streamlit server, so signals (Ctrl-C, SIGTERM) reach it directly."""
    check_port_free(port, address)
    study = prepared.study
    if study.admin_secret_env and not os.environ.get(study.admin_secret_env):
        print(f"note: {study.admin_secret_env} is not set, so the organiser view stays closed", file=sys.stderr)
    url, network_url = server_urls(address, port)
    print(f"reader study: {url}  ({len(prepared.cases)} cases; answers in {prepared.store_path})",
          file=sys.stderr, flush=True)
    if network_url:
        print(f"reader study: readers on other computers open {network_url}", file=sys.stderr, flush=True)
    # Absolute before the chdir: a relative study path would no longer lead to the entry from there.
    command = streamlit_command(prepared.entry.resolve(), port, address)
    os.chdir(prepared.workdir)
    sys.stdout.flush()
    os.execv(command[0], command)
    return 0  # not reached
