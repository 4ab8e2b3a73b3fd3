"""A real browser (Debian chromium + chromedriver, selenium) drives the running reader app.

The reader answers a few cases (both truths among them), reloads, and continues at the next; no page, image URL or viewer
document ever names the arm, the truth or the source file, and a real case's page is the same as a
synthetic case's apart from the case's own opaque id and number.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from study_app.demo import DEMO_READERS  # noqa: E402
from study_app.prepare import open_prepared  # noqa: E402
from study_app.study import load_study  # noqa: E402
from study_app.store import AnswerStore  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs chromium and chromedriver (apt-get install chromium chromium-driver)")
WAIT_S = 60
READER = "reader-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class StudyServer:
    """``urcdm-study run demo/study.yaml --port P`` as a user starts it, from the folder above the
    study's, with a relative path; can be stopped and started again."""

    def __init__(self, study_file: Path, port: int):
        self.study_file, self.port = study_file, port
        self.url = f"http://127.0.0.1:{port}/"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        where = self.study_file.parent.parent
        self.process = subprocess.Popen(
            [Path(sys.executable).parent / "urcdm-study", "run", str(self.study_file.relative_to(where)), "--port", str(self.port)],
            cwd=where, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                with urllib.request.urlopen(self.url + "_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"urcdm-study run did not start: {self.process.stdout.read().decode(errors='replace')[-2000:]}")
            time.sleep(0.3)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def running_app(tmp_path):
    from study_app.demo import build_demo

    study_file, _ = build_demo(tmp_path / "demo", repeat=2, crops=6)
    server = StudyServer(study_file, free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1200"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # websocket frames, for the leak check
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def wait_for(driver, xpath: str):
    return WebDriverWait(driver, WAIT_S).until(EC.element_to_be_clickable((By.XPATH, xpath)))


def click_button(driver, label: str) -> None:
    wait_for(driver, f"//button[normalize-space(.)='{label}']").click()


def wait_for_case(driver, number: int, total: int) -> None:
    WebDriverWait(driver, WAIT_S).until(
        EC.presence_of_element_located((By.XPATH, f"//*[contains(text(), 'Case {number} of {total}')]")))


def viewer_state(driver) -> tuple[str, str, int]:
    """(image src, the viewer document, image width once loaded) from inside the viewer's iframe."""
    frame = WebDriverWait(driver, WAIT_S).until(EC.presence_of_element_located((By.TAG_NAME, "iframe")))
    driver.switch_to.frame(frame)
    try:
        image = WebDriverWait(driver, WAIT_S).until(EC.presence_of_element_located((By.ID, "case-image")))
        WebDriverWait(driver, WAIT_S).until(lambda d: d.execute_script("return arguments[0].naturalWidth", image) > 0)
        return image.get_attribute("src"), driver.page_source, driver.execute_script("return arguments[0].naturalWidth", image)
    finally:
        driver.switch_to.default_content()


def normalised(text: str, case_id: str) -> str:
    return re.sub(r"Case \d+ of \d+", "Case # of #", text.replace(case_id, "CASE"))


def zoom_in_once(driver) -> tuple[float, float]:
    """Press the viewer's + button; returns the image's on-screen scale before and after."""
    driver.switch_to.frame(driver.find_element(By.TAG_NAME, "iframe"))
    try:
        scale = "return new DOMMatrix(getComputedStyle(document.getElementById('case-image')).transform).a"
        before = driver.execute_script(scale)
        driver.find_element(By.ID, "zoom-in").click()
        return before, driver.execute_script(scale)
    finally:
        driver.switch_to.default_content()


def test_a_reader_answers_cases_reloads_and_continues_where_they_stopped(running_app, browser):
    study = load_study(running_app.study_file)
    prepared = open_prepared(study.workdir)
    order = prepared.reader_cases(READER)
    total = len(order)
    forbidden = {arm.name.lower() for arm in study.arms} | {"truth", "real.tiff", "blurred.tiff", "stain-shift",
                                                            "slides/", str(study.workdir).lower()}

    def check_no_leak():
        source = browser.page_source.lower()
        assert not [word for word in forbidden if word in source]

    browser.get(running_app.url)
    wait_for(browser, "//input[@aria-label='Reader ID']").send_keys(READER)
    wait_for(browser, "//input[@aria-label='Access code']").send_keys(DEMO_READERS[READER])
    click_button(browser, "Start")
    click_button(browser, "Begin")

    # At least three cases, and enough to have met both truths.
    answered = next(k for k in range(3, total) if {c.truth for c in order[:k]} == {"real", "synthetic"})
    answers = [("Real", "Synthetic")[k % 2] for k in range(answered)]
    seen = {}
    for number, answer in enumerate(answers, start=1):
        wait_for_case(browser, number, total)
        src, viewer, width = viewer_state(browser)
        case = order[number - 1]
        assert src.endswith(f"/app/static/{case.id}{study.display.suffix}")
        assert width == study.display.size
        check_no_leak()
        assert not [word for word in forbidden if word in viewer.lower()]
        seen[case.truth] = (normalised(browser.find_element(By.TAG_NAME, "body").text, case.id),
                            normalised(viewer, case.id))
        if number == 1:
            before, after = zoom_in_once(browser)
            assert after == pytest.approx(before * 1.5, rel=1e-3)
        wait_for(browser, "//div[@role='radiogroup']//label[normalize-space(.)='3']").click()
        click_button(browser, answer)
    wait_for_case(browser, answered + 1, total)
    frames = websocket_frames(browser)
    assert frames and b"Case 1 of" in b"".join(frames)  # the capture works: the page's text arrives this way
    assert not [f for f in frames if str(study.path.parent).encode() in f or b"reader_app.py" in f]
    assert seen["real"] == seen["synthetic"]  # same page, same viewer, whatever the truth

    browser.refresh()  # the session token in the URL brings the reader back without logging in
    resume_at(browser, answered + 1, order, study, total)
    check_no_leak()

    running_app.stop()  # a server restart loses nothing either
    running_app.start()
    browser.refresh()
    resume_at(browser, answered + 1, order, study, total)

    stored = AnswerStore(prepared.store_path).all_answers()
    assert [(a.case, a.answer) for a in stored] == [(c.id, a.lower()) for c, a in zip(order, answers)]


def websocket_frames(driver) -> list[bytes]:
    """Every websocket message the page received so far (Chrome's performance log)."""
    frames = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.webSocketFrameReceived":
            response = message["params"]["response"]
            payload = response["payloadData"]
            frames.append(base64.b64decode(payload) if response.get("opcode") == 2 else payload.encode())
    return frames


def resume_at(browser, number, order, study, total) -> None:
    WebDriverWait(browser, WAIT_S).until(
        EC.presence_of_element_located((By.XPATH, f"//*[contains(text(), 'continue with case {number}')]")))
    wait_for_case(browser, number, total)  # no extra click: the case is already there
    src, _, _ = viewer_state(browser)
    assert src.endswith(f"{order[number - 1].id}{study.display.suffix}")
