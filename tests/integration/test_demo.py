"""The demo page (``run.py demo``): its logic on a registered store, its HTTP API through ``gradio_client``, and its
page in headless Chromium (skipped where Chromium or selenium is not installed)."""

from __future__ import annotations

import shutil
import socket

import numpy as np
import pytest
from PIL import Image

from fercore.constants import CLASS_NAMES

gradio = pytest.importorskip("gradio", reason="the demo extra: pip install -e '.[demo]'")
from gradio_client import Client, handle_file  # noqa: E402

from fercore.serving.demo import MAX_FILE_MB, analyse, build_app, launch, load_contenders  # noqa: E402
from fercore.tracking.locations import default_cache_dir  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _client_scratch_in_tmp_path(tmp_path, monkeypatch):
    """gradio_client makes an empty folder in the system's temp dir for every file it downloads, and leaves it:
    here they go under the test's own folder (the client's temp dir only: the page in this process keeps its own)."""
    import functools
    import tempfile
    from types import SimpleNamespace

    import gradio_client.client

    scratch = SimpleNamespace(gettempdir=lambda: str(tmp_path),
                              TemporaryDirectory=functools.partial(tempfile.TemporaryDirectory, dir=tmp_path))
    monkeypatch.setattr(gradio_client.client, "tempfile", scratch)


@pytest.fixture(scope="module")
def contenders(registered):
    return load_contenders("fer-photo", registered)


@pytest.fixture(scope="module")
def page(contenders):
    port = _free_port()
    app = build_app(contenders, "fer-photo", default_cache_dir() / "demo")  # where run.py demo writes
    launch(app, "127.0.0.1", port, block=False)
    yield f"http://127.0.0.1:{port}/"
    app.close()


def test_every_face_gets_each_contenders_probabilities_and_map(photos, contenders, tmp_path):
    a = analyse(photos["astronaut"], contenders, tmp_path)
    assert a.message.startswith("1 face found in ")
    assert [row[1] for row in a.table] == [c.label for c in contenders] and "@champion" in contenders[0].label.split()
    for row in a.table:
        probs = np.array(row[3:], float)
        assert len(probs) == 7 and abs(probs.sum() - 1) < 0.01 and row[2] == CLASS_NAMES[int(probs.argmax())]
    # each map enlarged, with its colour scale beside it (high at the top, red)
    assert len(a.maps) == len(contenders) and all(img.shape == (144, 188, 3) for img, _ in a.maps)
    bar = a.maps[0][0][:, 148:158].astype(int)
    assert bar[2, :, 0].mean() > 100 > bar[2, :, 2].mean() and bar[-3, :, 2].mean() > 100 > bar[-3, :, 0].mean()
    assert set(a.champion[0]) == set(CLASS_NAMES) and Image.open(a.annotated).size == (512, 512)


def test_each_model_is_named_with_its_aliases_and_validation_accuracy():
    from fercore.serving.demo import _label
    from fercore.tracking.registry import VersionInfo

    v3 = VersionInfo("m", "3", "READY", {"contender": "vgg7", "val_accuracy": "0.6841"}, "", "r", "s")
    assert _label(v3, ["@champion", "@champion-happy"]) == "v3 (vgg7) @champion @champion-happy, val 68.4%"
    assert _label(v3, []) == "v3 (vgg7), val 68.4%"


def test_no_face_and_files_that_are_no_photo_are_a_message(photos, contenders, tmp_path):
    no_face = analyse(photos["coffee"], contenders, tmp_path)
    assert no_face.message.startswith("No face found") and Image.open(no_face.annotated).size > (100, 100)  # shown
    broken = analyse(photos["broken"], contenders, tmp_path).message
    assert broken.startswith("That file could not be used: broken.jpg") and str(photos["broken"].parent) not in broken
    assert analyse(None, contenders, tmp_path).message.startswith("Upload a photo")


def test_the_http_api_answers_a_photo_and_keeps_serving_after_a_bad_file_and_a_huge_one(page, photos, tmp_path):
    client = Client(page, verbose=False, download_files=str(tmp_path))
    message, annotated, champion, table, maps = client.predict(handle_file(str(photos["astronaut"])), None,
                                                               api_name="/analyse")
    assert message.startswith("1 face found") and champion["label"] in CLASS_NAMES
    assert len(table["data"]) == len(maps) >= 1 and Image.open(annotated).size == (512, 512)
    assert not list((default_cache_dir() / "demo").glob("annotated-*"))  # no file kept per request
    message = client.predict(handle_file(str(photos["broken"])), None, api_name="/analyse")[0]
    assert message.startswith("That file could not be used: ") and "not a readable image" in message
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\0" * (MAX_FILE_MB + 1) * 2**20)
    with pytest.raises(Exception, match="(?i)size|large"):
        client.predict(handle_file(str(huge)), None, api_name="/analyse")
    assert client.predict(handle_file(str(photos["astronaut"])), None, api_name="/analyse")[0].startswith("1 face")


def test_five_visitors_at_once_are_queued_and_every_photo_answered(page, photos, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    def visit(_):
        client = Client(page, verbose=False, download_files=str(tmp_path))
        return client.predict(handle_file(str(photos["astronaut"])), None, api_name="/analyse")[0]

    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(visit, range(15)))
    assert [a.startswith("1 face found") for a in answers] == [True] * 15


def test_run_py_demo_removes_its_uploads_when_it_stops(registered, photos, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    port = _free_port()
    # faulthandler: a server that does not stop prints every thread's stack on SIGABRT (below)
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONFAULTHANDLER": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("GRADIO_TEMP_DIR", None)
    log = tmp_path / "demo.log"  # a file, not a pipe: an unread pipe that fills up blocks the server's exit
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "demo", "--model-name", "fer-photo",
                                   "--tracking-uri", registered, "--port", str(port)], env=env,
                                  stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(tmp_path))
                break
            except Exception:  # noqa: BLE001 (not listening yet)
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(1)
        assert client.predict(handle_file(str(photos["astronaut"])), None, api_name="/analyse")[0].startswith("1 face")
        (uploads,) = tmp_path.glob("fer-demo-uploads-*")
        assert any(p.name == "astronaut.jpg" for p in uploads.rglob("*"))  # the upload, in the page's own folder
        client.close()  # its heartbeat stream, as a closed browser tab
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.send_signal(signal.SIGABRT)  # faulthandler's dump of every thread, into the log
            time.sleep(3)
            server.kill()
            pytest.fail("the demo did not stop within 30 s of Ctrl-C:\n" + log.read_text()[-3000:])
    assert list(tmp_path.glob("fer-demo-uploads-*")) == []


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")), reason="no Chromium installed")
def test_the_page_shows_the_results_in_a_browser(page, photos, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options)
    try:
        driver.get(page)
        wait = WebDriverWait(driver, 60)
        wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]")))
        driver.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(photos["astronaut"]))
        wait.until(lambda d: "face found" in d.find_element(By.ID, "message").text)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".gallery-item, button.thumbnail-item")) >= 1)
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "1 face found" in body and "champion" in body and all(e in body for e in ("happy", "neutral"))
        driver.save_screenshot(str(tmp_path / "demo.png"))
    finally:
        driver.quit()
