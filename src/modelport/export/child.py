"""The child process that loads code from a file: a whole pickled model or a TorchScript archive.

DESIGN.md property 1: the only place modelport runs an input file's code. The parent has
already named every module the pickle imports (``--trust-code``) or scanned the TorchScript
archive; this process loads the model with torch, runs it on the job's inputs, traces it to
ONNX if asked, and writes the outputs to an .npz for the parent's parity check. Nothing it
loaded ever reaches the parent process.

    python -m modelport.export.child JOB.json
    JOB = {"source", "kind": "pickle" | "torchscript", "inputs": [spec], "check": [spec],
           "seed", "check_seed", "export": null | {"path", "opset"}, "out": ".npz path"}
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _specs(items: list[dict[str, Any]]) -> list[Any]:
    from .inputs import InputSpec

    return [InputSpec(d["name"], tuple(d["shape"]), d["dtype"],
                      tuple((int(a), n) for a, n in d["dynamic"].items()), d.get("high"),
                      d.get("fill")) for d in items]


def _module(obj: Any) -> Any:
    import torch

    if isinstance(obj, torch.nn.Module):
        return obj
    found = [v for v in (obj.values() if isinstance(obj, dict) else ())
             if isinstance(v, torch.nn.Module)]
    if len(found) == 1:
        return found[0]
    raise SystemExit(f"the file holds a {type(obj).__name__}, not one torch.nn.Module")


def main(argv: list[str]) -> int:
    import numpy as np
    import torch

    from .inputs import arrays
    from .torchside import Wrapped, run, trace

    with open(argv[0], encoding="utf-8") as f:
        job = json.load(f)
    if job["kind"] == "torchscript":
        model = torch.jit.load(job["source"], map_location="cpu")
    else:
        # --trust-code: the user was shown the modules this imports and asked for it.
        model = _module(torch.load(job["source"], map_location="cpu", weights_only=False))  # trusted: --trust-code, the user saw the imports; a child process
    model.eval()
    specs, check = _specs(job["inputs"]), _specs(job["check"])
    wrapped = Wrapped(model, [s.name for s in specs], hf=False)
    names: list[str] = []
    if job.get("export"):
        names = trace(wrapped, specs, arrays(specs, job["seed"]), job["export"]["path"],
                      job["export"]["opset"])
    outs = run(wrapped, check, arrays(check, job["check_seed"]))
    np.savez(job["out"], *outs.values())  # arr_0, arr_1, ... in output order
    with open(job["out"] + ".json", "w", encoding="utf-8") as f:
        json.dump({"names": names or list(outs)}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
