"""Remote inspect: requests and bytes per format against a local range server (tests/rangeserver.py),
against downloading the file. Writes the "remote" section of bench/README.md.

    .venv/bin/python bench/remote_bench.py
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from measure import write_section  # noqa: E402
from rangeserver import RangeServer, SparseFile  # noqa: E402

from modelport.cli import main  # noqa: E402

DATA = HERE / "data" / "remote"


def gpt(layers: int = 40, width: int = 1024) -> dict:
    import torch

    sd = {"wte.weight": torch.zeros(50257, width)}
    for i in range(layers):
        for name, shape in (("attn.c_attn.weight", (width, 3 * width)),
                            ("attn.c_proj.weight", (width, width)),
                            ("mlp.c_fc.weight", (width, 4 * width)),
                            ("mlp.c_proj.weight", (4 * width, width)),
                            ("ln_1.weight", (width,)), ("ln_2.weight", (width,))):
            sd[f"h.{i}.{name}"] = torch.zeros(shape)
    return sd


def sparse_safetensors(path: Path, shapes: dict[str, tuple[int, ...]]) -> None:
    header, pos = {}, 0
    for name, shape in shapes.items():
        n = 4
        for d in shape:
            n *= d
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [pos, pos + n]}
        pos += n
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.truncate(8 + len(text) + pos)


def build() -> dict[str, tuple[str, int]]:
    import numpy as np
    import onnx
    import torch
    from onnx import helper, numpy_helper

    DATA.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[str, int]] = {}
    big = DATA / "gpt.pt"
    if not big.exists():
        s = SparseFile(big)
        torch.save(gpt(), s)
        s.close()
    out["torch-zip (torch.save, GPT-style)"] = ("files/gpt.pt", big.stat().st_size)
    st = DATA / "gpt.safetensors"
    if not st.exists():
        sparse_safetensors(st, {k: tuple(v.shape) for k, v in gpt().items()})
    out["safetensors (one file)"] = ("files/gpt.safetensors", st.stat().st_size)
    repo = DATA / "acme" / "gpt-sharded"
    if not repo.exists():
        repo.mkdir(parents=True)
        shapes = {k: tuple(v.shape) for k, v in gpt().items()}
        names = list(shapes)
        half = len(names) // 2
        wmap = {}
        for i, part in enumerate((names[:half], names[half:]), 1):
            fname = f"model-0000{i}-of-00002.safetensors"
            sparse_safetensors(repo / fname, {k: shapes[k] for k in part})
            wmap.update({k: fname for k in part})
        (repo / "model.safetensors.index.json").write_text(json.dumps({"weight_map": wmap}))
        (repo / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 40}))
    out["hf repo, 2 safetensors shards (hf://)"] = (
        "hf://acme/gpt-sharded", sum(p.stat().st_size for p in repo.iterdir()))
    ox = DATA / "mlp.onnx"
    if not ox.exists():
        w = [numpy_helper.from_array(np.random.rand(2048, 2048).astype(np.float32), f"w{i}")
             for i in range(8)]
        nodes = [helper.make_node("MatMul", ["x" if i == 0 else f"h{i}", f"w{i}"], [f"h{i + 1}"])
                 for i in range(8)]
        g = helper.make_graph(nodes, "mlp",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2048])],
                              [helper.make_tensor_value_info("h8", onnx.TensorProto.FLOAT, [1, 2048])],
                              initializer=w)
        onnx.save(helper.make_model(g), str(ox), save_as_external_data=True,
                  location="mlp.onnx.data")
    out["onnx + external data (134 MB .data)"] = (
        "files/mlp.onnx", ox.stat().st_size + (DATA / "mlp.onnx.data").stat().st_size)
    gg = DATA / "llama.gguf"
    if not gg.exists():
        import gguf

        w = gguf.GGUFWriter(str(gg), "llama")
        w.add_context_length(4096)
        w.add_token_list([f"tok{i}" for i in range(32000)])  # a vocabulary's worth of metadata
        for i in range(8):
            w.add_tensor(f"blk.{i}.ffn_up.weight", np.zeros((4096, 1024), np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    out["gguf (32k-token vocabulary, 8 tensors)"] = ("files/llama.gguf", gg.stat().st_size)
    pk = DATA / "small.pth"
    if not pk.exists():
        torch.save({"w": torch.randn(256, 256)}, pk, _use_new_zipfile_serialization=False)
    out["legacy torch pickle (fetched whole)"] = ("files/small.pth", pk.stat().st_size)
    return out


def main_() -> None:
    files = build()
    rows = []
    with RangeServer(DATA) as srv:
        os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{srv.port}"
        for label, (target, size) in files.items():
            url = target if target.startswith("hf://") else srv.url(target)
            srv.reset()
            buf = io.StringIO()
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(buf):
                code = main(["inspect", url, "--json"])
            dt = time.perf_counter() - t0
            assert code == 0, buf.getvalue()
            doc = json.loads(buf.getvalue())
            rows.append((label, size, srv.requests, srv.body_bytes, dt, len(doc["weights"])))
            print(label, rows[-1], flush=True)
    lines = ["## remote", "",
             "`.venv/bin/python bench/remote_bench.py` on x86_64, 2 cores: `modelport inspect URL "
             "--json` against tests/rangeserver.py on 127.0.0.1 (ranges, multipart ranges, a Hub "
             "emulation for hf://). Requests and bytes are the server's own counts (bodies, "
             "JSON listings included, a redirect counts as one); the first request is the one "
             "that learns the size. File size: every file the model needs.", "",
             "| format | file size | requests | bytes fetched | fetched / size | seconds | tensors |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label, size, req, nbytes, dt, n in rows:
        lines.append(f"| {label} | {size:,} | {req} | {nbytes:,} | {nbytes / size:.5f} | "
                     f"{dt:.2f} | {n} |")
    lines += ["", "Formats whose readers read through `remote.ensure` (safetensors, torch zip, GGUF, "
              "TorchScript, hf-repo folders of those) fetch headers only; every other format is "
              "fetched whole before its reader runs (the legacy pickle row), within "
              "`MODELPORT_REMOTE_BUDGET`."]
    write_section("remote", "\n".join(lines))


if __name__ == "__main__":
    main_()
