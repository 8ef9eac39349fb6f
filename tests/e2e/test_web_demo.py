"""Browser end-to-end test of the web demo: Debian ``chromium`` driven by Playwright opens the page served by
``unif2ace web``, generates a face (watching the step previews), captions it, asks a question, edits it with a
mask, and saves a screenshot.

Run it with ``scripts/e2e_web.sh`` (installs chromium + playwright, writes ``docs/images/web_demo.png``).
Environment: ``UNIF2ACE_E2E_SCREENSHOT`` = where to save the screenshot (default: pytest's tmp folder);
``UNIF2ACE_E2E_MODEL`` = a bundle to serve instead of the tiny random one.
"""

from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    pytest.skip(
        "Debian chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)", allow_module_level=True
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright Python package is missing (pip install playwright)"
)
pytest.importorskip("fastapi", reason="the server needs the serve extra: pip install 'unif2ace[serve]'")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(tiny_bundle) -> Path:
    return Path(os.environ.get("UNIF2ACE_E2E_MODEL") or tiny_bundle)


@pytest.fixture(scope="module")
def web(model_dir):
    port = _free_port()
    cmd = [sys.executable, "-m", "unif2ace", "web", "--model", str(model_dir), "--port", str(port), "--threads", "1"]
    proc = subprocess.Popen(
        cmd + ["--log-level", "warning"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            pytest.fail(f"unif2ace web exited with {proc.returncode}: {proc.stdout.read()[-2000:]}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("unif2ace web did not start within 90 s")
        time.sleep(0.2)
    yield base
    proc.terminate()
    proc.wait(20)


def _image_from_src(src: str) -> Image.Image:
    assert src.startswith("data:image/png;base64,"), src[:40]
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")


def test_web_demo_generates_and_captions_a_face(web, model_dir, tmp_path):
    import torch

    from unif2ace.pipeline import Unif2acePipeline

    torch.set_num_threads(1)  # the browser and the server share the CPU with this process
    shot = Path(os.environ.get("UNIF2ACE_E2E_SCREENSHOT") or tmp_path / "web_demo.png")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 760})
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(web + "/")
        sync_api.expect(page.locator("#model-name")).not_to_have_text("connecting…", timeout=20_000)

        # Generate: the preview changes during sampling, then the final face becomes the current face.
        page.evaluate(
            "() => { window.previews = 0; new MutationObserver(() => window.previews++)"
            ".observe(document.getElementById('preview'), {attributes: true, attributeFilter: ['src']}); }"
        )
        page.fill("#gen-prompt", "A young woman with long wavy brown hair, smiling.")
        page.fill("#gen-seed", "7")
        page.fill("#gen-steps", "6")
        page.click("#gen-button")
        sync_api.expect(page.locator("#status")).to_contain_text("done: seed 7", timeout=60_000)
        assert page.evaluate("window.previews") >= 6  # 6 step previews + the final image
        face = _image_from_src(page.get_attribute("#face", "src"))

        # Caption the generated face (streamed into the page).
        page.click("#tabs button[data-task=caption]")
        page.click("#cap-button")
        sync_api.expect(page.locator("#status")).to_contain_text("done (caption", timeout=60_000)
        caption = page.eval_on_selector("#answer", "e => e.textContent")
        page.screenshot(path=str(shot), full_page=True)

        # Ask a question, then edit the top quarter with a mask file.
        page.click("#tabs button[data-task=ask]")
        page.fill("#ask-question", "Is the person smiling?")
        page.click("#ask-button")
        sync_api.expect(page.locator("#status")).to_contain_text("done (ask", timeout=60_000)
        sync_api.expect(page.locator("#chat p")).to_have_count(2)
        mask = Image.new("L", face.size, 0)
        mask.paste(255, (0, 0, face.width, face.height // 4))
        mask_path = tmp_path / "mask.png"
        mask.save(mask_path)
        page.click("#tabs button[data-task=edit]")
        page.set_input_files("#edit-mask", str(mask_path))
        page.fill("#edit-seed", "3")
        page.click("#edit-button")
        sync_api.expect(page.locator("#status")).to_contain_text("tokens regenerated, seed 3", timeout=60_000)
        browser.close()
    assert not errors, errors

    pipe = Unif2acePipeline.from_pretrained(model_dir, device="cpu")
    expected = pipe.generate("A young woman with long wavy brown hair, smiling.", seed=7, steps=6).images[0]
    assert np.array_equal(np.asarray(face), np.asarray(expected))  # the page shows what the API makes
    assert caption == pipe.caption(face).text and caption
    assert shot.is_file() and Image.open(shot).size[0] >= 1000
