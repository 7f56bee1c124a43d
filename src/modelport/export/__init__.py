"""ONNX export and parity (extra ``modelport[export]``: torch, transformers, onnx, onnxruntime).

    >>> from modelport.export import export, parity
    >>> result = export("pytorch_model.bin", "model.onnx")      # a recognised architecture
    >>> result.parity.ok, [o.max_abs for o in result.parity.outputs]

Where the PyTorch model comes from, by source:

    recognised weights    (state_dict, safetensors, HF folder, any reader's weights) the class
                          ``modelport.recognize`` names, built from the derived config; weights
                          through modelport's readers, no torch.load
    --model pkg.mod:Cls   the user's own class (imported because they named it), --init kwargs
    TorchScript archive   loaded by torch.jit.load in a child process (code and weights in it)
    whole pickled model   only with --trust-code: the modules the pickle imports are announced
                          first, then torch.load runs in a child process (DESIGN.md property 1)

Parity always follows: fresh inputs of other batch/sequence sizes than the trace (proving the
dynamic axes) go through PyTorch and onnxruntime; per output the max absolute and relative
error against a tolerance per dtype. Output is atomic: the .onnx (and its external data, for
models over 2 GB) are written in a temporary sibling folder and renamed into place.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError, ModelportError, UsageError
from ..model import Checkpoint
from .inputs import InputSpec, arrays, derive, parse_input, resize

__all__ = ["export", "parity", "ExportResult", "Parity", "OutputCheck", "TOLERANCES",
           "InputSpec", "parse_input"]

# (atol, rtol) per output dtype: float32 rounding across two kernels libraries stays ~1e-6
# relative; half precisions keep 3 and 2 significant digits.
TOLERANCES = {"float64": (1e-8, 1e-6), "float32": (1e-4, 1e-3), "float16": (1e-2, 1e-2),
              "bfloat16": (5e-2, 5e-2)}
_EXACT = (0.0, 0.0)  # integer and bool outputs
_PROTOBUF_LIMIT = 2 * 1024**3  # one ModelProto cannot exceed 2 GiB: weights go beside it
_TRACE, _CHECK = (2, 8), (3, 5)  # (batch, sequence) traced, and checked on


@dataclass
class OutputCheck:
    name: str
    shape: list[int]
    dtype: str
    max_abs: float
    max_rel: float
    atol: float
    rtol: float
    ok: bool

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Parity:
    outputs: list[OutputCheck]
    inputs: list[InputSpec]
    note: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.outputs) and all(o.ok for o in self.outputs)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "inputs": [s.to_json() for s in self.inputs],
                "outputs": [o.to_json() for o in self.outputs], "note": self.note}


@dataclass
class ExportResult:
    src: str
    dst: str
    source: str  # recognised | user-class | torchscript | pickle
    cls: str
    opset: int
    inputs: list[InputSpec]
    outputs: list[str]
    nbytes: int
    seconds: float
    external_data: list[str] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)
    parity: Parity | None = None

    def to_json(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "source": self.source, "class": self.cls,
                "opset": self.opset, "inputs": [s.to_json() for s in self.inputs],
                "outputs": self.outputs, "bytes": self.nbytes, "seconds": round(self.seconds, 3),
                "external_data": self.external_data, "imports": self.imports,
                "parity": self.parity.to_json() if self.parity else None}


def _need_extra() -> None:
    missing = []
    for mod in ("torch", "onnx", "onnxruntime"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise UsageError(f"export needs {', '.join(missing)}",
                         hint="pip install 'modelport[export]'")


@dataclass
class _Source:
    """Where the PyTorch model comes from, and the inputs it takes."""

    path: str
    kind: str
    cls: str
    specs: list[InputSpec]
    ck: Checkpoint
    build: Callable[[], Any] | None = None  # in-process: returns the Wrapped module
    imports: list[str] = field(default_factory=list)


def _imports(ck: Checkpoint) -> list[str]:
    """The modules unpickling the file imports, in first-use order."""
    seen: dict[str, None] = {}
    for g in ck.globals:
        seen.setdefault(g.module, None)
    return list(seen)


def _source(src: str, *, model: str | None, init: dict[str, Any] | None, trust_code: bool,
            inputs: list[InputSpec] | None, select: str | None,
            announce: Callable[[str], None]) -> _Source:
    from .. import open as open_checkpoint
    from ..recognize import recognize

    ck = open_checkpoint(src, select=select)
    given = list(inputs or [])
    if ck.kind == "torchscript" or ck.kind == "full-model":
        arch = recognize(ck) if not given else None
        specs = given or (derive(arch, *_TRACE) if arch is not None and arch.family else [])
        if not specs:
            raise UsageError(f"{src}: give the model's inputs with --input NAME:DIMS:DTYPE",
                             hint="e.g. --input pixel_values:1x3x224x224:float32")
        if ck.kind == "torchscript":
            # Exporting runs the archive's TorchScript code (no Python imports): only when the
            # scanner finds nothing in it, or the user trusts it.
            from ..scan import scan_file

            report = scan_file(src)
            if report.verdict != "clean" and not trust_code:  # fail closed: error is not clean
                raise UsageError(f"{src}: the scanner says {report.verdict} for this "
                                 f"TorchScript archive ({report.reason}); exporting runs its "
                                 "code", hint="--trust-code runs it anyway, in a child process")
            return _Source(src, "torchscript", "TorchScript module", specs, ck)
        imports = _imports(ck)
        if not trust_code:
            raise UsageError(f"{src} is a whole pickled model: exporting it means unpickling it, "
                             f"which imports and runs {', '.join(imports) or 'code'}",
                             hint="--trust-code loads it in a child process after naming the "
                             "modules; or convert its weights and use --model pkg.mod:Class")
        announce("the pickle imports these modules (loaded in a child process): "
                 + ", ".join(imports))
        cls = next((f"{g.module}.{g.name}" for g in ck.globals
                    if g.opcode in ("GLOBAL", "STACK_GLOBAL") and g.name[:1].isupper()), "module")
        return _Source(src, "pickle", cls, specs, ck, imports=imports)
    if model:
        if not given:
            raise UsageError("--model needs the inputs: --input NAME:DIMS:DTYPE (one per "
                             "forward() argument, in order)")
        spec = model

        def build_user() -> Any:
            from .torchside import Wrapped, build_user

            return Wrapped(build_user(spec, init or {}, ck), [s.name for s in given], hf=False)

        return _Source(src, "user-class", model, given, ck, build_user)
    arch = recognize(ck)
    if arch.family is None:
        why = "; ".join(f"{m['name']}: expected {m['expected']}, got {m['got']}"
                        for m in arch.mismatches[:3])
        near = f" (nearest {arch.nearest['class']}: {why})" if arch.nearest else ""
        raise InputError(f"the architecture is not recognised{near}", path=src,
                         hint="export it with your own class: --model pkg.module:Class "
                         "[--init JSON] --input ...")
    if not arch.verified:
        raise InputError(f"{arch.cls} could not be verified: {arch.note}", path=src)
    specs = given or derive(arch, *_TRACE)

    def build_hf() -> Any:
        from .torchside import Wrapped, build_recognised

        return Wrapped(build_recognised(ck, arch), [s.name for s in specs], hf=True)

    return _Source(src, "recognised", arch.cls or "", specs, ck, build_hf)


def _child(source: _Source, check: list[InputSpec], export_path: str | None, opset: int,
           workdir: str) -> tuple[list[str], dict[str, Any]]:
    """Run the torch side in a child process; returns output names and outputs on ``check``."""
    import numpy as np

    out = os.path.join(workdir, "outputs.npz")
    job = {"source": os.path.abspath(source.path), "kind": source.kind,
           "inputs": [s.to_json() | {"high": s.high, "fill": s.fill} for s in source.specs],
           "check": [s.to_json() | {"high": s.high, "fill": s.fill} for s in check],
           "seed": 0, "check_seed": 1, "out": out,
           "export": {"path": export_path, "opset": opset} if export_path else None}
    job_path = os.path.join(workdir, "job.json")
    with open(job_path, "w", encoding="utf-8") as f:
        json.dump(job, f)
    proc = subprocess.run([sys.executable, "-m", "modelport.export.child", job_path],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise InputError(f"loading the model in the child process failed: {last}",
                         path=source.path, hint="the classes it needs must be importable here")
    with open(out + ".json", encoding="utf-8") as f:
        names = json.load(f)["names"]
    with np.load(out) as data:  # written by our own child: no pickles (allow_pickle is False)
        values = [data[f"arr_{i}"] for i in range(len(data.files))]
    return names, dict(zip(names, values))


def _torch_outputs(source: _Source, check: list[InputSpec], export_path: str | None,
                   opset: int, workdir: str,
                   progress: Callable[[str], None]) -> tuple[list[str], dict[str, Any]]:
    if source.build is None:
        return _child(source, check, export_path, opset, workdir)
    from .torchside import run, trace

    module = source.build()
    names: list[str] = []
    if export_path:
        names = trace(module, source.specs, arrays(source.specs, 0), export_path, opset,
                      progress)
    outs = run(module, check, arrays(check, 1))
    return names or list(outs), outs


def _compare(onnx_path: str, check: list[InputSpec], ref: dict[str, Any],
             atol: float | None, rtol: float | None) -> Parity:
    import numpy as np
    import onnxruntime as ort  # type: ignore[import-untyped]

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # shape-inference warnings about dynamic dims are not news
    session = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    feed_names = {i.name for i in session.get_inputs()}
    feed = {k: v for k, v in arrays(check, 1).items() if k in feed_names}
    missing = feed_names - set(feed)
    if missing:
        raise UsageError(f"the ONNX model takes inputs {sorted(missing)} the check does not "
                         "have", hint="give them with --input NAME:DIMS:DTYPE")
    names = [o.name for o in session.get_outputs()]
    got = session.run(names, feed)
    expected = list(ref.values())
    if len(expected) != len(got):
        raise InputError(f"PyTorch gave {len(expected)} outputs and onnxruntime {len(got)}",
                         path=onnx_path, hint="the ONNX file is not an export of this source")
    checks = []
    for name, g, e in zip(names, got, expected):
        g, e = np.asarray(g), np.asarray(e)
        dtype = str(e.dtype)
        a, r = TOLERANCES.get(dtype, _EXACT)
        a, r = (atol if atol is not None else a), (rtol if rtol is not None else r)
        if g.shape != e.shape:
            checks.append(OutputCheck(name, list(g.shape), dtype, float("inf"), float("inf"),
                                      a, r, False))
            continue
        diff = np.abs(g.astype(np.float64) - e.astype(np.float64))
        max_abs = float(diff.max()) if diff.size else 0.0
        scale = np.abs(e.astype(np.float64))
        max_rel = float((diff / np.maximum(scale, 1e-12)).max()) if diff.size else 0.0
        ok = bool(np.all(diff <= a + r * scale)) and not np.isnan(diff).any()
        checks.append(OutputCheck(name, list(g.shape), dtype, max_abs, max_rel, a, r, ok))
    return Parity(checks, check)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _finish(tmp_onnx: str, dst: str, external: bool | None) -> list[str]:
    """Move the export into place: external data (one file beside DST) first, then the .onnx."""
    import onnx

    folder = os.path.dirname(tmp_onnx)
    others = [n for n in os.listdir(folder) if os.path.join(folder, n) != tmp_onnx]
    size = sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder))
    if external is None:
        external = bool(others) or size >= _PROTOBUF_LIMIT
    data_files: list[str] = []
    if external:
        # torch writes one file per tensor when the model passes 2 GB: gather them into one
        # DST.data (onnx's own external-data layout, offsets and lengths in the graph).
        model = onnx.load(tmp_onnx, load_external_data=True)
        location = os.path.basename(dst) + ".data"
        final = os.path.join(folder, "final.onnx")
        onnx.save_model(model, final, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=location, size_threshold=1024)
        del model
        tmp_onnx = final
        data = os.path.join(folder, location)
        if os.path.exists(data):
            _fsync(data)
            os.replace(data, os.path.join(os.path.dirname(os.path.abspath(dst)), location))
            data_files.append(location)
    _fsync(tmp_onnx)
    os.replace(tmp_onnx, dst)
    dfd = os.open(os.path.dirname(os.path.abspath(dst)) or ".", os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return data_files


def export(src: str, dst: str, *, model: str | None = None, init: dict[str, Any] | None = None,
           trust_code: bool = False, inputs: list[InputSpec] | None = None, opset: int = 17,
           check: bool = True, atol: float | None = None, rtol: float | None = None,
           external_data: bool | None = None, select: str | None = None,
           announce: Callable[[str], None] = lambda s: None) -> ExportResult:
    """Export ``src`` to ONNX at ``dst`` and (``check``) compare onnxruntime with PyTorch."""
    _need_extra()
    src, dst = os.fspath(src), os.fspath(dst)
    if os.path.abspath(src) == os.path.abspath(dst):
        raise UsageError("DST is the source file", path=dst)
    if os.path.isdir(dst):
        raise UsageError(f"{dst} is a folder; name the .onnx file to write", path=dst)
    start = time.perf_counter()
    source = _source(src, model=model, init=init, trust_code=trust_code, inputs=inputs,
                     select=select, announce=announce)
    checks = resize(source.specs, *_CHECK)
    parent = os.path.dirname(os.path.abspath(dst))
    with tempfile.TemporaryDirectory(prefix=f".{os.path.basename(dst)}.", dir=parent) as tmp:
        tmp_onnx = os.path.join(tmp, "export", "model.onnx")
        os.makedirs(os.path.dirname(tmp_onnx))
        announce(f"building {source.cls} ({source.kind}) and tracing it")
        try:
            names, ref = _torch_outputs(source, checks, tmp_onnx, opset, tmp, announce)
        except ModelportError:
            raise
        except Exception as exc:  # noqa: BLE001 - torch/transformers errors, as one line
            raise InputError(f"export failed: {type(exc).__name__}: {exc}", path=src,
                             hint="--debug shows the traceback; --model/--input may help") \
                from exc
        result_parity = None
        if check:
            announce("checking parity: onnxruntime against PyTorch")
            result_parity = _compare(tmp_onnx, checks, ref, atol, rtol)
        data_files = _finish(tmp_onnx, dst, external_data)
    nbytes = os.path.getsize(dst) + sum(
        os.path.getsize(os.path.join(parent, d)) for d in data_files)
    return ExportResult(src, dst, source.kind, source.cls, opset, source.specs, names, nbytes,
                        time.perf_counter() - start, data_files, source.imports, result_parity)


def parity(onnx_path: str, src: str, *, model: str | None = None,
           init: dict[str, Any] | None = None, trust_code: bool = False,
           inputs: list[InputSpec] | None = None, atol: float | None = None,
           rtol: float | None = None, select: str | None = None,
           announce: Callable[[str], None] = lambda s: None) -> Parity:
    """Compare an existing ONNX model with the PyTorch model ``src`` describes."""
    _need_extra()
    source = _source(os.fspath(src), model=model, init=init, trust_code=trust_code,
                     inputs=inputs, select=select, announce=announce)
    checks = resize(source.specs, *_CHECK)
    with tempfile.TemporaryDirectory(prefix="modelport-parity-") as tmp:
        try:
            _names, ref = _torch_outputs(source, checks, None, 0, tmp, announce)
        except ModelportError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"running the PyTorch model failed: {type(exc).__name__}: {exc}",
                             path=src) from exc
        return _compare(os.fspath(onnx_path), checks, ref, atol, rtol)
