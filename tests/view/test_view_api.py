"""The view server's API: statistics equal numpy's, search as documented, and nothing but the
opened files is ever served (other Hosts, other paths, other interfaces get nothing)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from modelport.view import Viewer, serve
from modelport.view.search import compile_query

st = pytest.importorskip("safetensors.numpy")


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(7)
    a = {
        "encoder.layer.0.attention.query.weight": rng.normal(size=(48, 48)).astype(np.float32),
        "encoder.layer.1.attention.query.weight": rng.normal(size=(48, 48)).astype(np.float32),
        "encoder.layer.0.output.bias": np.zeros(48, np.float32),
        "embed.weight": rng.normal(size=(100, 48)).astype(np.float16),
        "odd": np.array([1.0, np.nan, np.inf, -np.inf, 0.0, -2.5], np.float32),
        "steps": np.arange(10, dtype=np.int64),
    }
    b = dict(a)
    b["encoder.layer.1.attention.query.weight"] = a["encoder.layer.1.attention.query.weight"] * 1.01
    b["added"] = np.ones(3, np.float32)
    del b["steps"]
    pa, pb = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    st.save_file(a, str(pa))
    st.save_file(b, str(pb))
    return pa, pb


@pytest.fixture()
def server(files: tuple[Path, Path]) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    viewer = Viewer.open([str(files[0]), str(files[1])])
    httpd = serve(viewer)
    try:
        yield httpd.server_address[1], st.load_file(str(files[0]))
    finally:
        httpd.shutdown()
        httpd.server_close()


def _get(port: int, path: str, host: str | None = None) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path, headers={"Host": host or f"127.0.0.1:{port}"})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def _json(port: int, path: str) -> object:
    status, body = _get(port, path)
    assert status == 200, body
    return json.loads(body)


def test_stats_equal_numpy(server: tuple[int, dict[str, np.ndarray]]) -> None:
    port, ref = server
    for name in ("encoder.layer.0.attention.query.weight", "embed.weight", "steps"):
        s = _json(port, f"/api/tensor/{name}/stats?bins=16")
        x = ref[name].astype(np.float64)
        assert s["min"] == x.min() and s["max"] == x.max()
        assert s["mean"] == pytest.approx(x.mean(), rel=1e-12, abs=1e-12)
        assert s["std"] == pytest.approx(x.std(), rel=1e-12)  # population, numpy's default
        assert s["l2"] == pytest.approx(np.linalg.norm(x), rel=1e-12)
        assert s["zeros"] == int((x == 0).sum())
        counts, edges = np.histogram(x, bins=16, range=(x.min(), x.max()))
        assert s["histogram"]["counts"] == counts.tolist()
        assert s["histogram"]["edges"] == pytest.approx(edges.tolist())
    odd = _json(port, "/api/tensor/odd/stats")
    assert (odd["nan"], odd["inf"], odd["zeros"], odd["finite"]) == (1, 2, 1, 3)
    assert (odd["min"], odd["max"]) == (-2.5, 1.0)
    heat = _json(port, "/api/tensor/embed.weight/stats")["heatmap"]
    assert (heat["rows"], heat["cols"]) == (64, 48)
    assert len(heat["values"]) == 64


def test_npy_download_is_the_tensor(server: tuple[int, dict[str, np.ndarray]],
                                    tmp_path: Path) -> None:
    port, ref = server
    status, body = _get(port, "/api/tensor/embed.weight/npy")
    assert status == 200
    (tmp_path / "x.npy").write_bytes(body)
    got = np.load(tmp_path / "x.npy")  # a file this test wrote from the server's bytes
    assert got.dtype == np.float16 and np.array_equal(got, ref["embed.weight"])


@pytest.mark.parametrize("query,expected", [
    ("query weight", {"encoder.layer.0.attention.query.weight",
                      "encoder.layer.1.attention.query.weight"}),
    ('"layer.0."', {"encoder.layer.0.attention.query.weight", "encoder.layer.0.output.bias"}),
    ("F16", {"embed.weight"}),
    ("[48,48]", {"encoder.layer.0.attention.query.weight",
                 "encoder.layer.1.attention.query.weight"}),
    ("48x48 layer.1", {"encoder.layer.1.attention.query.weight"}),
    ("/^(odd|steps)$/", {"odd", "steps"}),
    ("I64", {"steps"}),
    ("nothing-like-this", set()),
])
def test_search_syntax_in_the_api(server: tuple[int, dict[str, np.ndarray]], query: str,
                                  expected: set[str]) -> None:
    port, _ = server
    from urllib.parse import quote

    got = _json(port, f"/api/tensors?query={quote(query)}")
    assert {r["name"] for r in got} == expected  # type: ignore[union-attr]


def test_a_bad_regex_is_a_400(server: tuple[int, dict[str, np.ndarray]]) -> None:
    port, _ = server
    status, body = _get(port, "/api/tensors?query=/(/")
    assert status == 400 and b"regular expression" in body


def test_diff_api(server: tuple[int, dict[str, np.ndarray]]) -> None:
    port, ref = server
    d = _json(port, "/api/diff")
    assert [c["name"] for c in d["changed"]] == ["encoder.layer.1.attention.query.weight"]
    assert [c["name"] for c in d["added"]] == ["added"]
    assert [c["name"] for c in d["removed"]] == ["steps"]
    t = _json(port, "/api/diff/encoder.layer.1.attention.query.weight")
    x = ref["encoder.layer.1.attention.query.weight"].astype(np.float64)
    y = (ref["encoder.layer.1.attention.query.weight"] * np.float32(1.01)).astype(np.float64)
    assert t["max_abs"] == pytest.approx(np.abs(x - y).max())
    assert t["cosine"] == pytest.approx(x.ravel() @ y.ravel() / np.linalg.norm(x) / np.linalg.norm(y))


@pytest.mark.parametrize("path", [
    "/api/tensor/..%2F..%2Fetc%2Fpasswd/npy", "/../../etc/passwd", "/static/../server.py",
    "/static/app.js/../../__init__.py", "/api/tensors?f=2", "/api/tensor/nope/stats",
    "/etc/passwd",
])
def test_paths_that_were_not_opened_get_4xx_and_nothing(
        server: tuple[int, dict[str, np.ndarray]], path: str) -> None:
    port, _ = server
    status, body = _get(port, path)
    assert 400 <= status < 500
    assert b"root:" not in body and b"import" not in body


def test_another_host_header_gets_nothing(server: tuple[int, dict[str, np.ndarray]]) -> None:
    port, _ = server
    status, body = _get(port, "/api/summary", host="evil.example:80")
    assert status == 421 and b"format" not in body
    status, _ = _get(port, "/api/summary", host=f"localhost:{port}")
    assert status == 200


def test_not_reachable_on_other_addresses(server: tuple[int, dict[str, np.ndarray]]) -> None:
    port, _ = server
    addrs = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            addrs.add(info[4][0])
    except socket.gaierror:
        pass
    for addr in addrs - {"127.0.0.1"}:
        with pytest.raises(OSError):
            socket.create_connection((addr, port), timeout=2).close()
    listening = socket.create_connection(("127.0.0.1", port), timeout=2)
    listening.close()


def test_query_predicate_without_a_server() -> None:
    from modelport.dtypes import by_name
    from modelport.model import Storage, TensorEntry

    t = TensorEntry("a.b", by_name("BF16"), (2, 3), Storage(12))
    assert compile_query("bf16")("a.b", t)  # a lower-case word matches names, and dtype codes
    assert compile_query("BF16 [2,3]")("a.b", t)
    assert not compile_query("BF16 [3,2]")("a.b", t)


def test_cli_serves_and_stops(files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
                              ) -> None:
    import argparse

    from modelport.cli import view as view_cmd

    stop = threading.Event()
    args = argparse.Namespace(path=str(files[0]), path2=None, port=0, no_browser=True)
    done: list[int] = []
    t = threading.Thread(target=lambda: done.append(view_cmd.run(args, stop)))
    t.start()
    for _ in range(100):
        out = capsys.readouterr().out
        if "http://127.0.0.1:" in out:
            break
        threading.Event().wait(0.05)
    port = int(out.split("http://127.0.0.1:")[1].split("/")[0])
    assert _json(port, "/api/summary")["format"] == "safetensors"  # type: ignore[index]
    stop.set()
    t.join(10)
    assert done == [0]


def test_format_summaries_reach_the_page(tmp_path: Path) -> None:
    """Graph and format summaries (a GGUF's architecture and tokenizer here) are in the
    summary the page renders, whatever the format."""
    gguf = Path(__file__).resolve().parents[1] / "fixtures" / "gguf" / "ggml-vocab-phi-3.gguf"
    if not gguf.exists():
        pytest.skip("GGUF fixture not present")
    viewer = Viewer.open([str(gguf)])
    httpd = serve(viewer)
    try:
        doc = _json(httpd.server_address[1], "/api/summary")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert doc["format"] == "gguf"  # type: ignore[index]
    assert doc["info"]["summary"]  # type: ignore[index]
