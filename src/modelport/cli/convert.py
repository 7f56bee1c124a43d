"""Convert between formats, shard, merge and cast, streaming bytes in bounded memory.

DST's format follows its name or --to: .safetensors, .pt/.pth/.bin (a torch.save zip that
torch.load(weights_only=True) reads), .npz; a folder (or a name without a suffix) gets the
Hugging Face sharded layout, with config and tokenizer files of a folder SRC copied along.
By default the weights are written and a note says what was left out; --full keeps the whole
checkpoint (optimizer state, epoch, ...) so that it can be converted back and resumed.
DST is written through a temporary sibling and renamed: an error or Ctrl-C leaves no partial DST.
Every source file is scanned first: an unsafe file, or one the scanner could not judge in full,
is refused unless --allow-unsafe.

examples:
  modelport convert model.pth model.safetensors
  modelport convert last.ckpt state.safetensors --full          everything, losslessly
  modelport convert ./bert-bin ./bert-st --max-shard-size 2GB    re-shard a repo as safetensors
  modelport convert ./repo merged.safetensors --dtype BF16 --verify
  modelport convert gpt2.safetensors ./gpt2 --to torch --dedupe  pytorch_model-*.bin shards
  modelport convert *.pth out/ --jobs 2                      many files, 2 processes, in order
  modelport convert model.pth weights.bin --to raw             flat buffer + weights.bin.layout.json
  modelport convert weights.bin model.safetensors --layout model.pth   a raw buffer back
  modelport convert ./llama-hf model.gguf --dtype Q8_0          llama.cpp names, tokenizer, Q8_0
  modelport convert model.gguf model.safetensors                GGUF blocks dequantized to F32
  modelport convert model.gguf ./hf-folder                      Hugging Face names, q/k unpermuted
  modelport convert model.gguf blocks.safetensors --keep-quantized   raw blocks, restorable
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

from ..convert import convert
from ..convert.cast import TARGETS, dtype_code
from ..formats import writer_names
from . import human_bytes, plural

__all__ = ["add_arguments", "run", "Progress"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", nargs="+", metavar="SRC",
                   help="a model file or a Hugging Face model folder (several: see DST)")
    p.add_argument("dst", metavar="DST", help="the file or folder to write (never SRC); with "
                   "several SRC, a folder that gets one output per SRC, named after it")
    p.add_argument("--to", choices=writer_names(),
                   help="output format, when DST's name does not say it")
    p.add_argument("--layout", metavar="REF",
                   help="SRC is a raw buffer (tensors end to end, no header) laid out as REF says: "
                   "a model file whose weights, in file order, are the buffer's, or a JSON list "
                   "[{name, dtype, shape}]")
    p.add_argument("--max-shard-size", metavar="SIZE",
                   help="largest shard of a folder DST, e.g. 5GB (the default), 500MB, 2GiB")
    p.add_argument("--keep-quantized", action="store_true",
                   help="GGUF SRC: keep ggml blocks (Q4_K ...) as raw U8 rows in safetensors, "
                   "with the metadata that restores them (converting back gives the same GGUF)")
    p.add_argument("--dtype", type=dtype_code, metavar="DTYPE",
                   help=f"cast F64/F32/F16/BF16 tensors to this type ({', '.join(TARGETS)}; "
                   "fp16, half, bf16, float32, fp8 ... also work), rounding as torch's .to does; "
                   "integer and bool tensors are left as they are; ggml blocks of a GGUF SRC "
                   "are dequantized to it; Q8_0 (a .gguf DST only) quantizes 2-D weights as "
                   "llama.cpp does")
    p.add_argument("--full", action="store_true",
                   help="keep every tensor and plain value of the checkpoint, not only weights")
    p.add_argument("--verify", action="store_true",
                   help="compare the result with SRC tensor by tensor before renaming it in")
    p.add_argument("--select", metavar="PATH",
                   help="dotted path of the subtree to convert, e.g. model_state_dict")
    p.add_argument("--dedupe", action="store_true",
                   help="store tied weights once and record the other names as aliases")
    p.add_argument("--force", action="store_true", help="replace DST if it exists")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="write N shards in parallel; with several SRC, convert N files at once "
                   "(processes)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress, notes or summary")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on "
                   "stdout (files written, tensors, bytes, notes, verification)")
    p.add_argument("--allow-unsafe", action="store_true",
                   help="convert a source the scanner calls unsafe or could not judge in full "
                   "(it is never executed either way); the scan itself always runs")


class Progress:
    """``done / total  pct  rate  ETA`` redrawn in place on a terminal, at most 10 times a second."""

    def __init__(self, stream: TextIO, interval: float = 0.1, label: str = "") -> None:
        self.stream, self.interval, self.label = stream, interval, label
        self.start = time.monotonic()
        self.last = 0.0
        self.drawn = False
        self.lock = threading.Lock()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < self.interval and done < total:
            return
        done = min(done, total)  # .npy headers are written too, but not planned
        with self.lock:
            self.last = now
            elapsed = max(now - self.start, 1e-6)
            rate = done / elapsed
            eta = (total - done) / rate if rate > 0 and total > done else 0.0
            pct = 100.0 * done / total if total else 100.0
            self.stream.write(f"\r  {self.label}{human_bytes(done)} / {human_bytes(total)}  "
                              f"{pct:5.1f}%  "
                              f"{human_bytes(rate)}/s  ETA {int(eta) // 60}:{int(eta) % 60:02d}"
                              "\033[K")  # clear what a longer previous line left behind
            self.stream.flush()
            self.drawn = True

    def finish(self) -> None:
        if self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (and SIGHUP) clean up like Ctrl-C: the temporary output is removed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    saved = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def run(args: argparse.Namespace) -> int:
    if len(args.src) > 1:
        return _many(args)
    args.src = args.src[0]
    return _one(args)


def _outputs(args: argparse.Namespace) -> list[str]:
    """DST/<name of SRC>.<suffix of the output format> for each SRC (a folder SRC: a folder)."""
    import os

    from ..errors import UsageError
    from ..formats import writer_for

    if not os.path.isdir(args.dst) and not args.dst.endswith(("/", os.sep)):
        raise UsageError("with several SRC, DST must be a folder", path=args.dst,
                         hint="create it, or end its name with /")
    writer = writer_for(args.to or "safetensors")
    suffix = writer.suffixes[0] if writer.suffixes else ".bin"
    outs = []
    for src in args.src:
        stem = os.path.basename(src.rstrip("/" + os.sep)) or "model"
        if os.path.isdir(src):
            outs.append(os.path.join(args.dst, stem))
        else:
            outs.append(os.path.join(args.dst, os.path.splitext(stem)[0] + suffix))
    if len(set(outs)) < len(outs):
        raise UsageError("two SRC would write the same DST name", path=args.dst,
                         hint="convert them one at a time")
    return outs


def _convert_one(job: tuple[dict[str, object], str, str]) -> tuple[str, object]:
    """One conversion in a worker process: ("ok", summary line) or ("error", one line)."""
    from ..errors import ModelportError

    opts, src, dst = job
    try:
        r = convert(src, dst, **opts)  # type: ignore[arg-type]
    except ModelportError as exc:
        return "error", str(exc)
    return "ok", (f"wrote {r.dst} ({r.format}, {plural(r.tensors, 'tensor')}, "
                  f"{human_bytes(r.bytes)}) in {r.seconds:.2f} s")


def _many(args: argparse.Namespace) -> int:
    """Several SRC into a folder: ``--jobs`` conversions at once in worker processes, results
    printed in the order the SRC were given."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    outs = _outputs(args)
    os.makedirs(args.dst, exist_ok=True)
    opts = dict(to=args.to, max_shard_size=args.max_shard_size, dtype=args.dtype,
                full=args.full, verify=args.verify, select=args.select, dedupe=args.dedupe,
                force=args.force, jobs=1, allow_unsafe=args.allow_unsafe, layout=args.layout,
                keep_quantized=args.keep_quantized)
    jobs = [(opts, src, dst) for src, dst in zip(args.src, outs)]
    workers = max(1, min(args.jobs, len(jobs)))
    if workers == 1:
        results = [_convert_one(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_convert_one, jobs))  # in input order
    failed = 0
    docs = []
    for src, (status, text) in zip(args.src, results):
        if status == "error":
            failed += 1
            print(f"modelport convert: error: {text}", file=sys.stderr)
        elif not (args.quiet or args.json):
            print(text, file=sys.stderr)
        docs.append({"src": src, "status": status, "message": text})
    if args.json:
        json.dump(docs, sys.stdout, indent=1)
        print()
    return 2 if failed else 0


def _one(args: argparse.Namespace) -> int:
    err = sys.stderr
    show = err.isatty() and not (args.quiet or args.json)
    progress = Progress(err, label="writing ") if show else None
    checking = Progress(err, label="verifying ") if show and args.verify else None
    try:
        with _terminate_as_interrupt():
            result = convert(args.src, args.dst, to=args.to, max_shard_size=args.max_shard_size,
                             dtype=args.dtype, full=args.full, verify=args.verify,
                             select=args.select, dedupe=args.dedupe, force=args.force,
                             jobs=args.jobs, allow_unsafe=args.allow_unsafe, layout=args.layout,
                             keep_quantized=args.keep_quantized,
                             progress=progress, verify_progress=checking)
    finally:
        for line in (progress, checking):
            if line is not None:
                line.finish()
    if args.json:
        verified = result.verified
        json.dump({"src": result.src, "dst": result.dst, "format": result.format,
                   "files": result.files, "tensors": result.tensors, "bytes": result.bytes,
                   "seconds": round(result.seconds, 3), "notes": result.notes,
                   "verified": None if verified is None else {
                       "same": verified.same, "compared": verified.compared}},
                  sys.stdout, indent=1)
        print()
    elif not args.quiet:
        for note in result.notes:
            print(f"modelport convert: note: {note}", file=err)
        rate = result.bytes / result.seconds if result.seconds else 0
        what = f"{plural(len(result.files), 'file')}, " if len(result.files) > 1 else ""
        print(f"wrote {result.dst} ({result.format}, {what}{plural(result.tensors, 'tensor')}, "
              f"{human_bytes(result.bytes)}) in {result.seconds:.2f} s "
              f"({human_bytes(rate)}/s)", file=err)
        if result.verified is not None:
            print(f"verified: {plural(result.verified.compared, 'tensor')} match {result.src}"
                  + (f" cast to {args.dtype}" if args.dtype else ""),
                  file=err)
    return 0
