"""A real browser (Debian chromium + chromedriver, selenium) drives the running reader app.

The reader answers three cases, reloads, and continues at case four; no page, image URL or viewer
document ever names the arm, the truth or the source file, and a real case's page is the same as a
synthetic case's apart from the case's own opaque id and number.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from study_app.demo import DEMO_READERS  # noqa: E402
from study_app.prepare import open_prepared  # noqa: E402
from study_app.server import streamlit_command  # noqa: E402
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


@pytest.fixture
def running_app(study_workdir):
    port = free_port()
    process = subprocess.Popen(streamlit_command(study_workdir / "reader_app.py", port, "127.0.0.1"), cwd=study_workdir,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            with urllib.request.urlopen(url + "_stcore/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"streamlit did not start: {process.stdout.read().decode(errors='replace')[-2000:]}")
        time.sleep(0.3)
    yield url, study_workdir
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1200"):
        options.add_argument(flag)
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


def test_a_reader_answers_three_cases_reloads_and_continues_at_four(running_app, browser):
    url, workdir = running_app
    prepared = open_prepared(workdir)
    order = prepared.reader_cases(READER)
    total = len(order)
    forbidden = {arm.name.lower() for arm in prepared.study.arms} | {"truth", "real.tiff", "blurred.tiff", "stain-shift",
                                                                    "slides/", str(workdir).lower()}

    def check_no_leak():
        source = browser.page_source.lower()
        assert not [word for word in forbidden if word in source]

    browser.get(url)
    wait_for(browser, "//input[@aria-label='Reader ID']").send_keys(READER)
    wait_for(browser, "//input[@aria-label='Access code']").send_keys(DEMO_READERS[READER])
    click_button(browser, "Start")
    click_button(browser, "Begin")

    seen = {}
    for number, answer in enumerate(("Real", "Synthetic", "Real"), start=1):
        wait_for_case(browser, number, total)
        src, viewer, width = viewer_state(browser)
        case = order[number - 1]
        assert src.endswith(f"/app/static/{case.id}{prepared.study.display.suffix}")
        assert width == prepared.study.display.size
        check_no_leak()
        assert not [word for word in forbidden if word in viewer.lower()]
        seen[case.truth] = (normalised(browser.find_element(By.TAG_NAME, "body").text, case.id),
                            normalised(viewer, case.id))
        wait_for(browser, "//div[@role='radiogroup']//label[normalize-space(.)='3']").click()
        click_button(browser, answer)
    wait_for_case(browser, 4, total)
    assert len(seen) == 2, "the demo reader's first three cases should hold both truths"
    assert seen["real"] == seen["synthetic"]  # same page, same viewer, whatever the truth

    browser.refresh()  # the session token in the URL brings the reader back without logging in
    WebDriverWait(browser, WAIT_S).until(
        EC.presence_of_element_located((By.XPATH, "//*[contains(text(), 'continue with case 4')]")))
    click_button(browser, "Continue")
    wait_for_case(browser, 4, total)
    src, _, _ = viewer_state(browser)
    assert src.endswith(f"{order[3].id}{prepared.study.display.suffix}")
    check_no_leak()

    stored = AnswerStore(prepared.store_path).all_answers()
    assert [(a.case, a.answer) for a in stored] == [(c.id, a) for c, a in zip(order, ("real", "synthetic", "real"))]
