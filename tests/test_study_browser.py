"""A real browser (Debian chromium + chromedriver, selenium) drives the running reader app.

The reader answers by keyboard and by one click, at 1366x768 and 1920x1080 with the answer bar always
in the window, reloads and continues at the next case with no extra click, and never sees one image
twice; no page, image URL or websocket frame names the arm, the truth, the source file or the server's
folders, and every case image the browser received has the same byte count. The server is killed
under an open page and started again: the page says so at once, keeps the case, and carries on by
itself. Access: a case image without a session is refused, logging out ends the session, a session
expires; wrong codes back off for the id they were typed for, never for another reader or the
organiser; the organiser's downloads go to a live organiser session only.

Set ``URCDM_SCREENSHOTS=DIR`` to keep screenshots of what a reader sees (a restart, a lock-out).
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

webdriver = pytest.importorskip("selenium.webdriver")
from browser import CHROMEDRIVER, CHROMIUM, MISSING, headless_chromium  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from study_app.access import FREE_TRIES  # noqa: E402
from study_app.preparation.demo import DEMO_READERS  # noqa: E402
from study_app.preparation.prepare import open_prepared  # noqa: E402
from study_app.preparation.study import load_study  # noqa: E402
from study_app.store.database import AnswerStore  # noqa: E402
from study_app.web.gate import current_gate  # noqa: E402

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
    from study_app.preparation.demo import build_demo

    study_file, secret = build_demo(tmp_path / "demo", crops=6)
    server = StudyServer(study_file, free_port())
    server.secret = secret
    server.start()
    yield server
    server.stop()


def screenshot(driver, name: str) -> None:
    folder = os.environ.get("URCDM_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


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
    text = re.sub(r"Case \d+ of \d+", "Case # of #", text.replace(case_id, "CASE"))
    return re.sub(r"\d+ %", "# %", text)  # the fitted zoom follows the window size


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
        assert shown["src"].endswith(f"/case-image/{case.id}{prepared.encoding.suffix}?session={token}")
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
    assert pages["real"] == pages["synthetic"], pages  # same page, whatever the truth
    # Every case image the browser received, as the browser itself counts it: one size on the wire and decoded.
    sizes = browser.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name.includes('/case-image/'))"
        ".map(e => [e.encodedBodySize, e.decodedBodySize])")
    assert len(sizes) > answered and len({tuple(size) for size in sizes}) == 1, sizes

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
    # Nobody zoomed: max_zoom is relative to the fitted image (it once recorded the fit itself, 2.35 or so).
    assert [a.max_zoom for a in stored] == [1.0] * answered


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


def test_images_need_a_session_and_logout_and_expiry_end_it(running_app, browser):
    prepared = open_prepared(load_study(running_app.study_file).workdir)
    first = prepared.reader_cases(READER)[0]
    log_in(browser, running_app.url)
    click_button(browser, "Begin")
    shown = shown_case(browser)
    url = browser.current_url
    image = f"{running_app.url}case-image/{first.id}{prepared.encoding.suffix}"
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


def status_text(driver) -> str:
    return driver.execute_script("const s = document.querySelector('.urcdm-status'); return s ? s.textContent : ''")


def reader_state(driver) -> dict:
    return driver.execute_script(
        "const i = document.getElementById('case-image'), r = document.querySelector('.urcdm-reader');"
        "return {case: i.dataset.case, shown: i.classList.contains('shown'), busy: r.classList.contains('busy'),"
        " offline: r.classList.contains('offline'), progress: document.querySelector('.urcdm-progress').textContent,"
        " message: document.querySelector('.urcdm-message').textContent, same_page: window.__samePage === 1}")


def test_a_server_restart_under_an_open_page(running_app, browser):
    """Killed mid-study: the page says so within two seconds and keeps the case it shows; an answer given
    meanwhile is held (never the next case before the server confirms it); when the server is back the
    answer is stored and the page goes on by itself, without a reload."""
    prepared = open_prepared(load_study(running_app.study_file).workdir)
    order = prepared.reader_cases(READER)
    store = AnswerStore(prepared.store_path)
    log_in(browser, running_app.url)
    click_button(browser, "Begin")
    shown_case(browser)
    press(browser, "3", "r")
    assert next_case(browser, order[0].id)["case"] == order[1].id
    browser.execute_script("window.__samePage = 1")  # gone if the page reloads

    running_app.process.kill()  # not a clean stop: the server just vanishes
    running_app.process.wait()
    killed = time.monotonic()
    WebDriverWait(browser, 10, poll_frequency=0.05).until(lambda d: "cannot be reached" in status_text(d))
    assert time.monotonic() - killed < 2.0
    state = reader_state(browser)
    assert (state["case"], state["shown"], state["offline"], state["busy"]) == (order[1].id, True, True, False)
    time.sleep(7)  # long enough for Streamlit's own "Connection error" dialog, which would block every click
    browser.find_element(By.CSS_SELECTOR, "button.synthetic[data-confidence='4']").click()  # the answer bar still works
    time.sleep(1)
    state = reader_state(browser)
    assert state["case"] == order[1].id and state["shown"] and state["busy"]  # held: the same case, the bar locked
    assert "sent when the server is back" in state["message"] and state["progress"].startswith("Case 2 of")
    assert [a.case for a in store.all_answers()] == [order[0].id]  # nothing stored while the server is away
    screenshot(browser, "study-server-away")

    running_app.start()
    WebDriverWait(browser, WAIT_S, poll_frequency=0.1).until(lambda d: reader_state(d)["case"] == order[2].id)
    state = shown_case(browser) | reader_state(browser)
    assert state["same_page"] and not state["offline"] and not state["busy"] and status_text(browser) == ""
    assert state["progress"].startswith("Case 3 of")
    screenshot(browser, "study-server-back")
    press(browser, "2", "s")  # and the reading goes on as before
    assert next_case(browser, order[2].id)["case"] == order[3].id
    stored = [(a.case, a.answer, a.confidence) for a in store.all_answers()]
    assert stored == [(order[0].id, "real", 3), (order[1].id, "synthetic", 4), (order[2].id, "synthetic", 2)]
    for case in order[3:]:  # to the end: the page then thanks the reader
        assert shown_case(browser)["case"] == case.id
        press(browser, "1", "r")
        WebDriverWait(browser, WAIT_S, poll_frequency=0.05).until(
            lambda d: d.execute_script(READY) != case.id or "Thank you" in d.find_element(By.TAG_NAME, "body").text)
    see(browser, "Thank you")
    assert len(store.all_answers()) == len(order)


def log_in_organiser(driver, url: str, secret: str) -> None:
    driver.get(url)
    wait_for(driver, "//*[@role='tab' and normalize-space(.)='Organiser']").click()
    wait_for(driver, "//input[@aria-label='Organiser secret']").send_keys(secret)
    click_button(driver, "Open organiser view")


def see(driver, text: str) -> None:
    WebDriverWait(driver, WAIT_S).until(EC.presence_of_element_located((By.XPATH, f"//*[contains(text(), \"{text}\")]")))


def log_out(driver) -> None:
    log_out_button = "//button[normalize-space(.)='Log out']"
    # The sidebar is collapsed on a new page, but stays open when the browser opened it before.
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_elements(By.XPATH, "//*[@data-testid='stExpandSidebarButton']")
                                        or [b for b in d.find_elements(By.XPATH, log_out_button) if b.is_displayed()])
    if not [b for b in driver.find_elements(By.XPATH, log_out_button) if b.is_displayed()]:
        wait_for(driver, "//*[@data-testid='stExpandSidebarButton']").click()
    click_button(driver, "Log out")
    wait_for(driver, "//input[@aria-label='Reader ID']")


def wrong_guesses(driver, gate, scope: str, key: str, field: str, button: str, count: int) -> None:
    """``count`` wrong codes typed again and again into the login form already on the page (no reload
    between them), each waited for until the server has counted it."""
    for attempt in range(count):
        box = wait_for(driver, f"//input[@aria-label='{field}']")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(f"wrong {attempt}")
        click_button(driver, button)
        WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(lambda _: failures(gate, scope, key) == attempt + 1)


def failures(gate, scope: str, key: str) -> int:
    row = gate.sessions._db().execute("SELECT failures FROM login_failures WHERE scope = ? AND key = ?",
                                      (scope, key)).fetchone()
    return row[0] if row else 0


def test_wrong_codes_hold_back_only_the_id_they_were_typed_for(running_app, browser):
    """All from one address: a guesser locks out reader-2 only; reader-1 with the right code and the
    organiser get in at once. Wrong organiser secrets lock out the organiser only. A right code clears
    its own count."""
    url, gate = running_app.url, current_gate(load_study(running_app.study_file).workdir)
    browser.get(url)
    wait_for(browser, "//input[@aria-label='Reader ID']").send_keys("reader-2")
    wrong_guesses(browser, gate, "reader", "reader-2", "Access code", "Start", FREE_TRIES)
    see(browser, "wrong access code")
    log_in(browser, url, reader="reader-2")  # the right code, after five wrong ones: refused unread
    see(browser, "Too many wrong attempts for this reader ID")
    screenshot(browser, "study-locked-out")
    assert "session=" not in browser.current_url
    log_in(browser, url)  # reader-1, right code, same address: straight in
    wait_for(browser, "//button[normalize-space(.)='Begin']")
    log_out(browser)
    log_in_organiser(browser, url, running_app.secret)  # nor is the organiser held back by readers' guesses
    see(browser, "Organiser view")
    log_out(browser)

    wait_for(browser, "//*[@role='tab' and normalize-space(.)='Organiser']").click()
    wrong_guesses(browser, gate, "organiser", "organiser", "Organiser secret", "Open organiser view", FREE_TRIES)
    see(browser, "Wrong organiser secret")
    log_in_organiser(browser, url, running_app.secret)
    see(browser, "Too many wrong attempts at the organiser secret")
    log_in(browser, url)  # the organiser's lock-out is not the readers'
    wait_for(browser, "//button[normalize-space(.)='Begin']")
    log_out(browser)

    # A success clears the count: typos before each login never add up to a wait.
    wait_for(browser, "//input[@aria-label='Reader ID']").send_keys(READER)
    wrong_guesses(browser, gate, "reader", READER, "Access code", "Start", FREE_TRIES - 1)
    log_in(browser, url)
    wait_for(browser, "//button[normalize-space(.)='Begin']")
    assert failures(gate, "reader", READER) == 0
    log_out(browser)
    wait_for(browser, "//input[@aria-label='Reader ID']").send_keys(READER)
    wrong_guesses(browser, gate, "reader", READER, "Access code", "Start", FREE_TRIES - 1)
    log_in(browser, url)  # uncleared, the count would now be past the free tries
    wait_for(browser, "//button[normalize-space(.)='Begin']")


def test_organiser_downloads_go_to_a_live_organiser_session_only(running_app, browser):
    """The Export tab's files (answers with their truth) are links to the study's own route, never
    Streamlit's open /media/ files: fetched with the session they work, without it, with a reader's
    session or after logging out they are refused."""
    gate = current_gate(open_prepared(load_study(running_app.study_file).workdir).workdir)
    case = gate.reader_cases(READER)[0]
    gate.answers.record(READER, case.id, case.arm, case.truth, "real", 2, 1.0, 2.0, case.image_id,
                        comment="=HYPERLINK(\"http://example.org\", \"x\")")
    log_in_organiser(browser, running_app.url, running_app.secret)
    wait_for(browser, "//*[@role='tab' and normalize-space(.)='Export']").click()
    link = wait_for(browser, "//a[normalize-space(.)='Raw answers (CSV)']")
    href = link.get_attribute("href")
    assert "/organiser-download/answers.csv?session=" in href
    fetched = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(async r => done([r.status, r.headers.get('content-disposition'), await r.text()]),"
        " () => done([-1, null, '']));", href)
    assert fetched[0] == 200 and fetched[1].startswith("attachment;") and case.id in fetched[2]
    assert "'=HYPERLINK" in fetched[2]  # a spreadsheet shows it as text instead of running it
    reader_token = gate.open_session("reader", READER)
    assert fetch_status(browser, href.split("?")[0]) == 403
    assert fetch_status(browser, href.split("?")[0] + f"?session={reader_token}") == 403
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    # Streamlit's media route (not its own /static/media/ fonts) is neither used nor named.
    assert not [name for name in loaded if urlparse(name).path.startswith("/media/")]
    assert not re.search(r"(?<!/static)/media/", browser.page_source)
    log_out(browser)
    assert fetch_status(browser, href) == 403
