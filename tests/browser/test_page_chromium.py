"""The page in a real browser: Debian's headless Chromium driven by Selenium through the system chromedriver.

Nothing is downloaded: both binaries come from the distribution's packages (``chromium``,
``chromium-driver``; .ci/run installs them). Every wait is on a condition, with a timeout.
"""
import os
import shutil
import tempfile

import pytest
from browser_testdata import CLASSES, PREDS
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TIMEOUT = 30


@pytest.fixture(scope="module")
def driver():
    for path in (CHROMIUM, CHROMEDRIVER):
        assert os.path.exists(path), (f"{path} is missing: install Debian's browser with "
                                      "'apt-get install -y chromium chromium-driver' (as root).")
    profile = tempfile.mkdtemp(prefix="detkit-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1280,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SE_OFFLINE", "true")  # Selenium Manager must never fetch a browser or driver
        browser = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    browser.set_page_load_timeout(TIMEOUT)
    yield browser
    browser.quit()
    shutil.rmtree(profile, ignore_errors=True)


def wait(driver, condition, what):
    return WebDriverWait(driver, TIMEOUT, poll_frequency=0.05).until(lambda d: condition(d), message=what)


def ready(driver):
    return driver.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready"


def cell_boxes(driver, index, kind):
    """The boxes of ``kind`` ("pred" / "gt") drawn over image ``index``'s thumbnail, as their data-class."""
    rects = driver.find_elements(By.CSS_SELECTOR, f'#grid figure[data-index="{index}"] svg rect.{kind}')
    return [int(r.get_attribute("data-class")) for r in rects]


def expected_preds(index, score, classes=range(len(CLASSES))):
    return sorted(c for c, s, _ in PREDS[index] if s >= score and c in classes)


def slider_value(driver):
    return float(driver.find_element(By.ID, "score").get_attribute("value"))


def test_boxes_follow_the_slider_and_the_class_filter(driver, toy_server, tmp_path):
    driver.get(toy_server.url)
    wait(driver, lambda d: ready(d) and len(d.find_elements(By.CSS_SELECTOR, "#grid figure")) == 5, "the grid")
    assert driver.find_element(By.ID, "dataset").text == "browser_toy"

    # image 0 at the starting threshold (0.25): six predictions score at least that
    score = slider_value(driver)
    assert score == 0.25
    wait(driver, lambda d: sorted(cell_boxes(d, 0, "pred")) == expected_preds(0, score), "boxes at 0.25")
    assert len(expected_preds(0, score)) == 6

    # move the slider with the keyboard: 40 steps of 0.01
    driver.find_element(By.ID, "score").send_keys(Keys.ARROW_RIGHT * 40)
    wait(driver, lambda d: slider_value(d) == 0.65, "the slider at 0.65")
    wait(driver, lambda d: ready(d) and sorted(cell_boxes(d, 0, "pred")) == expected_preds(0, 0.65), "boxes at 0.65")
    assert len(cell_boxes(driver, 0, "pred")) == 3  # 0.9, 0.8, 0.7
    assert "score=0.65" in driver.current_url

    # class filter: keep dogs only; cats and birds disappear, and images without a dog leave the grid
    for name in ("cat", "bird"):
        driver.find_element(By.CSS_SELECTOR, f'#class-filter input[data-class="{CLASSES.index(name)}"]').click()
    wait(driver, lambda d: ready(d) and [f.get_attribute("data-index") for f in
                                         d.find_elements(By.CSS_SELECTOR, "#grid figure")] == ["0", "2", "3"],
         "the dog images")
    drawn = driver.find_elements(By.CSS_SELECTOR, "#grid svg rect")
    assert drawn and {r.get_attribute("data-class") for r in drawn} == {"1"}
    assert cell_boxes(driver, 0, "pred") == expected_preds(0, 0.65, classes=[1]) == [1]
    assert "classes=1" in driver.current_url

    # open image 0: the full image with its boxes and the table (the dog at 0.7 is a TP with IoU 1)
    driver.find_element(By.CSS_SELECTOR, '#grid figure[data-index="0"]').click()
    wait(driver, lambda d: ready(d) and d.find_element(By.ID, "detail").is_displayed(), "the detail view")
    detail_preds = driver.find_elements(By.CSS_SELECTOR, "#detail-figure svg rect.pred")
    assert [r.get_attribute("data-class") for r in detail_preds] == ["1"]
    row = driver.find_element(By.CSS_SELECTOR, "#detail-table tr.pred")
    assert [td.text for td in row.find_elements(By.TAG_NAME, "td")] == ["pred 5", "dog", "0.700", "TP", "–", "1.00",
                                                                        "GT 1"]
    wait(driver, lambda d: d.execute_script(
        "const i = document.querySelector('#detail-figure img'); return i.complete && i.naturalWidth === 100;"),
        "the full image")

    # the state is in the URL: a reload shows the same view
    driver.refresh()
    wait(driver, lambda d: ready(d) and d.find_element(By.ID, "detail").is_displayed(), "the view after a reload")
    assert slider_value(driver) == 0.65
    checked = [i.get_attribute("data-class") for i in driver.find_elements(By.CSS_SELECTOR, "#class-filter input")
               if i.is_selected()]
    assert checked == ["1"]
    assert len(driver.find_elements(By.CSS_SELECTOR, "#detail-figure svg rect.pred")) == 1

    path = tmp_path / "browser.png"
    assert driver.save_screenshot(str(path))
    assert Image.open(path).size == tuple(driver.execute_script("return [window.innerWidth, window.innerHeight]"))

    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []  # no failed request, script error or blocked (CSP) load
