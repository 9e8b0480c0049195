"""The web page in a real browser (Debian's chromium via Playwright) against the real server.

Draws digits with mouse strokes and uploads a generated photo; screenshots land in the test's tmp dir.
Skips only where Playwright or chromium cannot be found (.ci/install-browser installs chromium).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ocr_fixtures import Style, digit_pool, pick_digits, render

NO_PLAYWRIGHT = "Playwright is not installed (pip install playwright)"
NO_CHROMIUM = "chromium not found (run .ci/install-browser or set DIGITOCR_CHROMIUM)"
sync_api = pytest.importorskip("playwright.sync_api", reason=NO_PLAYWRIGHT)
CHROMIUM = os.environ.get("DIGITOCR_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM or not Path(CHROMIUM).exists():
    pytest.skip(NO_CHROMIUM, allow_module_level=True)

MODEL = os.environ.get("DIGITOCR_TEST_MODEL", "seed")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 15_000
# Strokes as fractions of the canvas (x, y); the canvas is twice as wide as tall.
SEVEN = [[(0.10, 0.20), (0.25, 0.20), (0.16, 0.80)]]
ONE = [[(0.45, 0.18), (0.45, 0.82)]]
PHOTO_TEXT = "2047"


@pytest.fixture(scope="module")
def server_url():
    """The real app on uvicorn, in a thread, on a free loopback port."""
    import uvicorn

    from digitocr.serve import ServeSettings, create_app

    app = create_app(ServeSettings(model=MODEL, threads=1))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server_url):
    page = browser.new_page(viewport={"width": 900, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server_url)
    yield page
    page.close()
    assert not errors, f"JavaScript errors: {errors}"


def draw(page, strokes) -> None:
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        points = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(x, y, steps=10)
        page.mouse.up()


def wait_for_text(page, selector: str, text: str) -> None:
    sync_api.expect(page.locator(selector)).to_have_text(text, timeout=WAIT_MS)


def test_drawing_a_seven_reads_seven(page, tmp_path):
    draw(page, SEVEN)
    wait_for_text(page, "#draw-text", "7")
    card = page.locator("#draw-digits li")
    sync_api.expect(card).to_have_count(1)
    assert card.get_attribute("aria-label").startswith("Digit 7")
    assert page.locator("#draw-digits li .bar").count() == 10
    assert page.locator("#draw-digits img.seen").evaluate("img => img.naturalWidth") == 28
    page.screenshot(path=tmp_path / "draw-seven.png", full_page=True)

    draw(page, ONE)
    wait_for_text(page, "#draw-text", "71")
    page.click("#undo")
    wait_for_text(page, "#draw-text", "7")
    page.click("#clear")
    wait_for_text(page, "#draw-text", "–")
    assert page.locator("#undo").is_disabled()


def photo_of_a_number(path: Path, mnist) -> Path:
    """Real handwriting (MNIST test digits) on lit, slightly rotated, noisy paper, saved as a JPEG."""
    rng = np.random.default_rng(0)
    lines = pick_digits(PHOTO_TEXT, mnist.test.images, digit_pool(mnist.test.labels), rng)
    style = Style(height=60, gradient=0.3, rotation=3, noise=0.02, page_px=(480, 320), seed=0)
    Image.fromarray(render(lines, style)).save(path, quality=85)
    return path


def test_uploading_a_photo_shows_its_digits_and_boxes(page, tmp_path, mnist):
    photo = photo_of_a_number(tmp_path / "number.jpg", mnist)
    page.click("#tab-photo")
    assert page.locator("#panel-draw").is_hidden()
    page.set_input_files("#photo-file", str(photo))
    wait_for_text(page, "#photo-text", PHOTO_TEXT)
    sync_api.expect(page.locator("#photo-boxes rect")).to_have_count(len(PHOTO_TEXT))
    assert page.locator("#photo-boxes text").all_text_contents() == list(PHOTO_TEXT)
    page.screenshot(path=tmp_path / "photo.png", full_page=True)


def test_confidences_read_as_percentages_never_as_certainty(page):
    shown = page.evaluate("[1, 0.99996, 0.9996, 0.996, 0.5, 0.0123, 0.0004, 0].map(percent)")
    assert shown == [">99.9%", ">99.9%", ">99.9%", "99.6%", "50.0%", "1.2%", "<0.1%", "<0.1%"]


def test_a_bad_upload_shows_the_servers_error(page, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not an image")
    page.click("#tab-photo")
    page.set_input_files("#photo-file", str(bad))
    alert = page.locator("#photo-error")
    sync_api.expect(alert).to_be_visible(timeout=WAIT_MS)
    assert "not an image digitocr can read" in alert.text_content()


def test_phone_sized_screen(browser, server_url, tmp_path):
    page = browser.new_page(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page.goto(server_url)
    pad = page.locator("#pad").bounding_box()
    assert pad["width"] <= 390 and pad["x"] >= 0  # no sideways scrolling
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    draw(page, SEVEN)  # pointer events: the same handlers serve mouse, pen and touch
    wait_for_text(page, "#draw-text", "7")
    page.screenshot(path=tmp_path / "phone.png", full_page=True)
    page.close()


def test_a_failed_upload_shows_no_boxes_of_the_photo_before(page, tmp_path, mnist):
    photo = photo_of_a_number(tmp_path / "number.jpg", mnist)
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not an image")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/v1/read" in r.url else None)
    page.click("#tab-photo")
    page.set_input_files("#photo-file", str(photo))
    wait_for_text(page, "#photo-text", PHOTO_TEXT)
    sync_api.expect(page.locator("#photo-boxes rect")).to_have_count(len(PHOTO_TEXT))
    for attempt in (1, 2):  # the same file chosen again is read again
        page.set_input_files("#photo-file", str(bad))
        sync_api.expect(page.locator("#photo-error")).to_be_visible(timeout=WAIT_MS)
        wait_for_text(page, "#photo-text", "–")
        assert page.locator("#photo-figure").is_hidden() and page.locator("#photo-boxes rect").count() == 0
        assert len(requests) == 1 + attempt
    page.click("#tab-draw")  # each panel keeps its own error
    assert page.locator("#draw-error").is_hidden()
    page.click("#tab-photo")
    assert "not an image digitocr can read" in page.locator("#photo-error").text_content()


def test_a_format_the_browser_cannot_show_reads_without_a_preview(page, tmp_path, mnist):
    tiff = tmp_path / "number.tif"
    Image.open(photo_of_a_number(tmp_path / "number.jpg", mnist)).save(tiff)
    page.click("#tab-photo")
    page.set_input_files("#photo-file", str(tiff))
    wait_for_text(page, "#photo-text", PHOTO_TEXT)
    sync_api.expect(page.locator("#photo-no-preview")).to_be_visible(timeout=WAIT_MS)
    assert page.locator("#photo-figure").is_hidden()  # no broken image, no boxes over nothing


def test_an_unreachable_server_is_said_in_words_and_clear_clears_it(page):
    page.route("**/v1/read*", lambda route: route.abort())
    draw(page, SEVEN)
    error = page.locator("#draw-error")
    sync_api.expect(error).to_contain_text("could not be reached", timeout=WAIT_MS)
    wait_for_text(page, "#draw-text", "–")  # no earlier reading shown as this drawing's
    page.focus("#clear")
    page.keyboard.press("Enter")
    sync_api.expect(error).to_be_hidden(timeout=WAIT_MS)
    assert page.evaluate("document.activeElement.id") == "pad"  # focus not dropped to <body>
