"""The view page driven in headless Chromium (Debian's chromium, driven by Playwright): open a
training checkpoint, search, click a tensor and see its histogram, then a diff of two
checkpoints showing the changed tensor."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelport.view import Viewer, serve

torch = pytest.importorskip("torch")
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test "
                                "installs it)")
# What the probe of this machine found Chromium needs when run as root without a network.
_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _checkpoint(path: Path, seed: int, epoch: int) -> None:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(2, 16)).sum().backward()
    opt.step()
    torch.save({"epoch": epoch, "model_state_dict": net.state_dict(),
                "optimizer_state_dict": opt.state_dict(), "loss": 0.5}, path)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture()
def page_of(browser: object, tmp_path: Path) -> Iterator[object]:
    servers = []

    def open_page(*paths: Path) -> object:
        httpd = serve(Viewer.open([str(p) for p in paths]))
        servers.append(httpd)
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/")
        return page

    yield open_page
    for h in servers:
        h.shutdown()
        h.server_close()


def test_search_click_histogram_and_diff(page_of: object, tmp_path: Path) -> None:
    a, b = tmp_path / "epoch1.pt", tmp_path / "epoch2.pt"
    _checkpoint(a, seed=0, epoch=1)
    _checkpoint(b, seed=0, epoch=2)
    sd = torch.load(b, weights_only=True)
    sd["model_state_dict"]["2.weight"] += 0.25  # one tensor changed
    torch.save(sd, b)

    page = page_of(a, b)  # type: ignore[operator]
    page.wait_for_selector("#verdict")
    assert "torch-zip" in page.inner_text("#summary")
    assert "training-checkpoint" in page.inner_text("#summary")
    page.fill("#search", "weight [32,16]")
    sync_api.expect(page.locator("#count")).to_have_text("1 tensors")
    assert page.locator("#table tbody tr").count() == 1
    page.click("#table tbody tr[data-name='0.weight']")
    page.wait_for_selector("#stats-table")
    bars = page.get_attribute("#histogram", "data-bars")
    assert bars is not None and int(bars) > 5
    expected = sd["model_state_dict"]["0.weight"].double()
    shown_max = float(page.inner_text("#stats-table td[data-stat='max']"))
    assert shown_max == pytest.approx(float(expected.max()), rel=1e-5)
    if os.environ.get("MODELPORT_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["MODELPORT_SCREENSHOTS"], "view.png"),
                        full_page=True)
    page.click("#diff-button")
    page.wait_for_selector("#diff-table tr[data-name='2.weight'] td.cosine:not(:empty)")
    row = page.inner_text("#diff-table tr[data-name='2.weight']")
    assert "changed" in row
    assert page.inner_text("#diff-table tr[data-name='2.weight'] td.max-abs") == "0.250000"
    if os.environ.get("MODELPORT_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["MODELPORT_SCREENSHOTS"], "view-diff.png"),
                        full_page=True)
