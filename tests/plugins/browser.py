"""Headless Debian chromium through its chromedriver, for the tests that drive a real browser."""

from __future__ import annotations

import os
import shutil
import tempfile

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
MISSING = "needs chromium and chromedriver (apt-get install chromium chromium-driver)"


def headless_chromium(width: int = 1366, height: int = 768, capabilities: dict | None = None):
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(flag)
    for name, value in (capabilities or {}).items():
        options.set_capability(name, value)
    # Chromium leaves its singleton socket folders in TMPDIR when chromedriver ends it: give it a folder
    # of its own, removed with the browser, so test runs do not litter /tmp.
    folder = tempfile.mkdtemp(prefix="urcdm-chromium-")
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER, env={**os.environ, "TMPDIR": folder})
    driver = webdriver.Chrome(service=service, options=options)
    quit_browser = driver.quit

    def quit_and_clean_up() -> None:
        try:
            quit_browser()
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    driver.quit = quit_and_clean_up
    return driver
