"""The web page in a real browser: Debian chromium driven by Playwright against uvicorn on 127.0.0.1.

Skipped only when the Playwright package or /usr/bin/chromium is missing (CI installs both:
``apt-get install -y chromium`` and ``pip install playwright``; never ``playwright install``).
"""
from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

try:
    from playwright.sync_api import sync_playwright
except ImportError:
    sync_playwright = None
if sync_playwright is None:
    pytest.skip("playwright is not installed (pip install playwright)", allow_module_level=True)
if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} not found (apt-get install -y chromium)", allow_module_level=True)
pytest.importorskip("uvicorn")

import uvicorn  # noqa: E402

from fashionlab.engine.checkpoint import save_weights  # noqa: E402
from fashionlab.models.backbone import create_backbone  # noqa: E402
from fashionlab.models.net import ClassifierNet  # noqa: E402
from fashionlab.serve import create_app  # noqa: E402
from fashionlab.tasks.base import TaskMeta  # noqa: E402

ATTR = TaskMeta(["sleeve_length_labels", "collar_design_labels"],
                [["Sleeveless", "Short Sleeves", "Long Sleeves"], ["Shirt Collar", "Peter Pan", "Puritan Collar"]])


def tiny_weights(path: Path) -> Path:
    torch.manual_seed(0)
    backbone = create_backbone("test_efficientnet", pretrained="none")
    net = ClassifierNet(backbone.model, backbone.num_features, ATTR.head_sizes).eval()
    with torch.no_grad():
        for head in net.head.heads:
            head.weight.mul_(20.0)
    return save_weights(path, net, "attributes", ATTR, "test_efficientnet", 32, backbone.mean, backbone.std)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """uvicorn serving a tiny attributes model on a free loopback port; yields the base URL."""
    root = tmp_path_factory.mktemp("browser")
    app = create_app([tiny_weights(root / "best.pt")])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start within 30 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield chromium
        chromium.close()


def _image(path: Path) -> Path:
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)).save(path)
    return path


def test_upload_shows_bars_and_top_labels(server: str, browser, tmp_path: Path) -> None:
    image = _image(tmp_path / "dress.jpg")
    expected = httpx.post(f"{server}/predict/attributes", content=image.read_bytes(),
                          headers={"content-type": "image/jpeg"}, timeout=30).json()["attributes"]
    page = browser.new_page()
    try:
        page.goto(server + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=15000)
        assert page.input_value("#task") == "attributes"
        page.set_input_files("#file", str(image))
        page.wait_for_selector(".bar", timeout=15000)
        page.wait_for_function("document.body.dataset.done === '1'", timeout=15000)
        assert page.locator(".group").count() == 2
        assert page.locator(".row").count() == 6
        top = page.inner_text("#top")
        for head, result in expected.items():
            assert f"{head}: {result['top']}" in top
            assert result["top"] in page.inner_text("#results")
        assert page.inner_text("#error") == ""
        shot = Path(os.environ.get("FASHIONLAB_SCREENSHOT_DIR", tmp_path)) / "serve_page.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 5000
    finally:
        page.close()


def test_keypoints_and_similar_items_render(server: str, browser, tmp_path: Path) -> None:
    """Responses of a keypoints model and of /search, faked in the browser: the page draws what the JSON holds."""
    image = _image(tmp_path / "coat.png")
    health = httpx.get(f"{server}/health", timeout=30).json()
    health["search"]["available"] = True
    prediction = {"task": "keypoints", "keypoints": [{"name": "neckline_left", "x": 10, "y": 12, "visible": True},
                                                     [40, 50], {"name": "hidden", "x": 5, "y": 5, "visible": False}]}
    similar = {"top": 12, "results": [{"id": "shop/1", "score": 0.93, "category": "tops", "image": None},
                                      {"id": "shop/2", "score": 0.41, "category": "", "image": None}]}
    page = browser.new_page()
    try:
        page.route("**/health", lambda route: route.fulfill(json=health))
        page.route("**/predict/**", lambda route: route.fulfill(json=prediction))
        page.route("**/search**", lambda route: route.fulfill(json=similar))
        page.goto(server + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=15000)
        page.set_input_files("#file", str(image))
        page.wait_for_function("document.body.dataset.done === '1'", timeout=15000)
        assert page.get_attribute("#preview", "data-keypoints") == "2"  # the invisible point is not drawn
        assert page.get_attribute("#similar", "data-count") == "2"
        assert "shop/1" in page.inner_text("#similar") and "0.930" in page.inner_text("#similar")
        assert page.is_visible("#similar-section")
    finally:
        page.close()


def test_server_error_is_shown(server: str, browser, tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    page = browser.new_page()
    try:
        page.goto(server + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=15000)
        page.set_input_files("#file", str(bad))
        page.wait_for_function("document.body.dataset.done === '1'", timeout=15000)
        assert "400" in page.inner_text("#error") or "415" in page.inner_text("#error")
        assert page.locator(".bar").count() == 0
    finally:
        page.close()
    assert httpx.get(f"{server}/health", timeout=30).json()["status"] == "ok"
