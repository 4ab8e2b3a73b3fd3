"""A real browser (Debian chromium + chromedriver, selenium) drives the running reader app.

The reader answers by keyboard and by one click, at 1366x768 and 1920x1080 with the answer bar always
in the window, reloads and continues at the next case with no extra click, and never sees one image
twice; no page, image URL or websocket frame names the arm, the truth, the source file or the server's
folders. Access: a case image without a session is refused, logging out ends the session, a session
expires, and wrong codes back off.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from browser import CHROMEDRIVER, CHROMIUM, MISSING, headless_chromium  # noqa: E402
from study_app.access import FREE_TRIES  # noqa: E402
from study_app.demo import DEMO_READERS  # noqa: E402
from study_app.prepare import open_prepared  # noqa: E402
from study_app.study import load_study  # noqa: E402
from study_app.store import AnswerStore  # noqa: E402

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason=MISSING)
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

    study_file, _ = build_demo(tmp_path / "demo", crops=6)
    server = StudyServer(study_file, free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def browser():
    # Performance logs carry the websocket frames, for the leak check.
    driver = headless_chromium(capabilities={"goog:loggingPrefs": {"performance": "ALL"}})
    yield driver
    driver.quit()


def wait_for(driver, xpath: str):
    return WebDriverWait(driver, WAIT_S).until(EC.element_to_be_clickable((By.XPATH, xpath)))


def click_button(driver, label: str) -> None:
    wait_for(driver, f"//button[normalize-space(.)='{label}']").click()


READY = ("const r = document.querySelector('.urcdm-reader'), i = document.getElementById('case-image');"
         "return !!(r && i && !r.classList.contains('busy') && i.classList.contains('shown')) && i.dataset.case")


def log_in(driver, url: str, reader: str = READER, code: str | None = None) -> None:
    driver.get(url)
    wait_for(driver, "//input[@aria-label='Reader ID']").send_keys(reader)
    wait_for(driver, "//input[@aria-label='Access code']").send_keys(DEMO_READERS[reader] if code is None else code)
    click_button(driver, "Start")


def shown_case(driver) -> dict:
    """The case on screen once its image is painted and the bar takes answers."""
    WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(lambda d: d.execute_script(READY))
    return driver.execute_script(
        "const i = document.getElementById('case-image'), bar = document.querySelector('.urcdm-bar');"
        "const r = bar.getBoundingClientRect();"
        "return {case: i.dataset.case, src: i.src, width: i.naturalWidth, bar_top: r.top, bar_bottom: r.bottom,"
        " window_height: innerHeight, stage: document.querySelector('.urcdm-stage').clientHeight,"
        " progress: document.querySelector('.urcdm-progress').textContent,"
        " keys: document.querySelector('.urcdm-keys').textContent}")


def press(driver, *keys: str) -> None:
    chain = webdriver.ActionChains(driver)
    for key in keys:
        chain = chain.send_keys(key)
    chain.perform()


def next_case(driver, before: str) -> dict:
    WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(lambda d: d.execute_script(READY) not in (None, before))
    return shown_case(driver)


def normalised(text: str, case_id: str) -> str:
    return re.sub(r"Case \d+ of \d+", "Case # of #", text.replace(case_id, "CASE"))


def test_a_reader_answers_by_keyboard_at_two_window_sizes_reloads_and_continues(running_app, browser):
    study = load_study(running_app.study_file)
    prepared = open_prepared(study.workdir)
    order = prepared.reader_cases(READER)
    forbidden = {arm.name.lower() for arm in study.arms} | {"truth", "real.tiff", "blurred.tiff", "stain-shift",
                                                            "slides/", str(study.workdir).lower()}
    log_in(browser, running_app.url)
    click_button(browser, "Begin")
    token = browser.current_url.split("session=")[1]

    # At least four cases, and enough to have met both truths.
    answered = next(k for k in range(4, len(order)) if {c.truth for c in order[:k]} == {"real", "synthetic"})
    seen, pages = [], {}
    for number in range(answered):
        if number == 2:
            browser.set_window_size(1920, 1080)
        shown = shown_case(browser)
        case = order[number]
        assert shown["case"] == case.id and shown["progress"] == f"Case {number + 1} of {len(order)}"
        assert shown["src"].endswith(f"/case-image/{case.id}{study.display.suffix}?session={token}")
        assert shown["width"] == prepared.display_side  # natural size: 1:1 in the viewer is one source pixel
        # The answer bar is in the window, below an image that got the room that is left.
        assert 0 < shown["bar_top"] and shown["bar_bottom"] <= shown["window_height"], shown
        assert shown["stage"] >= 0.5 * shown["window_height"], shown
        assert "R real" in shown["keys"] and "1–5" in shown["keys"]
        source = browser.page_source.lower()
        assert not [word for word in forbidden if word in source]
        pages[case.truth] = normalised(browser.find_element(By.TAG_NAME, "body").text, case.id)
        seen.append(case.content_id)
        if number == 0:  # a confidence alone asks for the answer, next to the bar
            press(browser, "4")
            message, after = browser.find_element(By.CSS_SELECTOR, ".urcdm-message").text, shown_case(browser)
            assert "press R" in message and after["case"] == case.id
            assert after["bar_bottom"] <= after["window_height"] and after["stage"] == shown["stage"]  # nothing moved
            press(browser, "s")
        elif number == 1:  # one click on the scale: "real, 2 of 5"
            browser.find_element(By.CSS_SELECTOR, "button.real[data-confidence='2']").click()
        else:
            press(browser, "f", "r", "5")  # flag, then answer and confidence in the other order
        next_case(browser, case.id)
    assert len(set(seen)) == len(seen)  # no image content twice
    frames = websocket_frames(browser)
    assert frames and b"urcdm_case_reader" in b"".join(frames)  # the capture works
    assert not [f for f in frames if str(study.path.parent).encode() in f or b"reader_page.py" in f]
    assert pages["real"] == pages["synthetic"]  # same page, whatever the truth

    browser.refresh()  # the session in the URL brings the reader back, straight to the next case
    assert shown_case(browser)["case"] == order[answered].id
    running_app.stop()  # a server restart loses nothing either
    running_app.start()
    browser.refresh()
    assert shown_case(browser)["case"] == order[answered].id

    stored = AnswerStore(prepared.store_path).all_answers()
    expected = [("synthetic", 4, False), ("real", 2, False)] + [("real", 5, True)] * (answered - 2)
    assert [(a.case, a.answer, a.confidence, a.flagged) for a in stored] == [
        (c.id, *e) for c, e in zip(order, expected)]


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


def fetch_status(driver, url: str) -> int:
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1]; fetch(arguments[0]).then(r => done(r.status), () => done(-1));", url)


def test_images_need_a_session_logout_and_expiry_end_it_and_wrong_codes_back_off(running_app, browser):
    prepared = open_prepared(load_study(running_app.study_file).workdir)
    first = prepared.reader_cases(READER)[0]
    log_in(browser, running_app.url)
    click_button(browser, "Begin")
    shown = shown_case(browser)
    url = browser.current_url
    image = f"{running_app.url}case-image/{first.id}{prepared.study.display.suffix}"
    assert fetch_status(browser, shown["src"]) == 200
    assert fetch_status(browser, image) == 403  # the same page, without the session
    wait_for(browser, "//*[@data-testid='stExpandSidebarButton']").click()
    click_button(browser, "Log out")  # in the sidebar
    wait_for(browser, "//input[@aria-label='Reader ID']")
    assert fetch_status(browser, shown["src"]) == 403
    browser.get(url)  # the old link
    WebDriverWait(browser, WAIT_S).until(EC.presence_of_element_located(
        (By.XPATH, "//*[contains(text(), 'Your session has ended')]")))

    # Sessions expire: a study whose logins last two seconds.
    study = yaml.safe_load(running_app.study_file.read_text())
    study["access"]["session_hours"] = 2 / 3600
    running_app.study_file.write_text(yaml.safe_dump(study, sort_keys=False))
    log_in(browser, running_app.url)
    wait_for(browser, "//button[normalize-space(.)='Begin']")
    time.sleep(2.5)
    browser.refresh()
    WebDriverWait(browser, WAIT_S).until(EC.presence_of_element_located(
        (By.XPATH, "//*[contains(text(), 'Your session has ended')]")))

    for attempt in range(FREE_TRIES + 1):
        log_in(browser, running_app.url, code="not the code")
        expected = "wrong access code" if attempt < FREE_TRIES else "Too many wrong attempts"
        WebDriverWait(browser, WAIT_S).until(EC.presence_of_element_located(
            (By.XPATH, f"//*[contains(text(), '{expected}')]")))
    log_in(browser, running_app.url)  # the right code, during the wait: refused unread
    WebDriverWait(browser, WAIT_S).until(EC.presence_of_element_located(
        (By.XPATH, "//*[contains(text(), 'Too many wrong attempts')]")))
    assert "session=" not in browser.current_url
