"""Hugging Face model folders: sharded or single-file weights, with config.json as metadata.

Layout (transformers ``save_pretrained``, huggingface_hub ``split_torch_state_dict_into_shards``)::

    config.json                              the architecture, read as metadata
    model.safetensors                        or, sharded:
    model-00001-of-00003.safetensors ...     + model.safetensors.index.json
    pytorch_model.bin                        or pytorch_model-00001-of-00002.bin ...
                                             + pytorch_model.bin.index.json
    index: {"metadata": {"total_size": N}, "weight_map": {tensor name: shard file name}}

Every shard is opened by content (a ``.bin`` shard may be a torch zip or a safetensors file).
A shard the index names that is missing, a shard file the index does not name, or a tensor the
index places in a shard that does not hold it is an error: a half-downloaded repo must not look
complete.
"""

from __future__ import annotations

import builtins
import json
import os
import re
from typing import Any

from ..classify import classify
from ..errors import ModelportError, RepoError
from ..limits import DEFAULT_LIMITS, Limits
from ..model import Checkpoint, TensorEntry
from .base import Format, Options, Probe

FORMAT_ID = "hf-repo"

INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SINGLES = ("model.safetensors", "pytorch_model.bin")
_SHARD = re.compile(r"^(model|pytorch_model)-\d+-of-\d+\.(safetensors|bin)$")


def sniff_dir(path: str) -> bool:
    names = set(os.listdir(path))
    return bool(names & set(INDEXES) or names & set(SINGLES) or
                any(_SHARD.match(n) for n in names))


def _read_json(path: str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """A repo's JSON file, refused past ``limits.nesting`` levels (inspect prints it
    recursively; config.json and indexes nest a few levels)."""
    try:
        with builtins.open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError) as exc:  # "[[[[..." past the parser's limit
        raise RepoError(f"cannot read JSON: {exc}", path=path,
                        hint="the file is corrupt or incomplete") from exc
    level, depth = [data], 0
    while level:  # iteratively: the check itself must not recurse
        depth += 1
        if depth > limits.nesting:
            raise RepoError(f"JSON nests more than {limits.nesting} levels deep", path=path,
                            hint="the file is corrupt")
        level = [v for x in level if isinstance(x, (dict, list))
                 for v in (x.values() if isinstance(x, dict) else x)]
    return data


def shard_files(path: str, limits: Limits = DEFAULT_LIMITS
                ) -> tuple[str | None, list[str], dict[str, str]]:
    """(index file, shard names in order, weight_map) of a repo folder."""
    names = sorted(os.listdir(path))
    for index in INDEXES:
        if index in names:
            data = _read_json(os.path.join(path, index), limits)
            wmap = data.get("weight_map") if isinstance(data, dict) else None
            if not isinstance(wmap, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in wmap.items()
            ):
                raise RepoError("index has no weight_map of tensor -> shard",
                                path=os.path.join(path, index))
            shards = list(dict.fromkeys(wmap.values()))
            for shard in shards:
                if os.path.basename(shard) != shard:
                    raise RepoError(f"index names a shard outside the folder: {shard!r}",
                                    path=os.path.join(path, index))
            stem = "model" if index.startswith("model.") else "pytorch_model"
            extra = [n for n in names if _SHARD.match(n) and n.startswith(stem + "-")
                     and n not in shards]
            if extra:
                raise RepoError(f"shard {extra[0]} is not in {index}",
                                path=os.path.join(path, extra[0]),
                                hint="remove it, or restore the index that lists it")
            missing = [s for s in shards if s not in names]
            if missing:
                raise RepoError(f"shard {missing[0]} named by {index} is missing",
                                path=os.path.join(path, missing[0]),
                                hint=f"{len(missing)} of {len(shards)} shards missing; "
                                "download the repo again")
            return index, shards, wmap
    for single in SINGLES:
        if single in names:
            return None, [single], {}
    raise RepoError("folder holds no model weights (no index, model.safetensors or "
                    "pytorch_model.bin)", path=path)


def open(path: str, limits: Limits = DEFAULT_LIMITS, select: str | None = None) -> Checkpoint:
    from .. import detect
    from . import get

    index, shards, wmap = shard_files(path, limits)
    tree: dict[str, TensorEntry] = {}
    shard_info = []
    size = 0
    for shard in shards:
        spath = os.path.join(path, shard)
        if os.path.isdir(spath):
            raise RepoError(f"shard {shard} is a folder", path=spath,
                            hint="a shard must be a weights file")
        fmt = detect.sniff(spath)
        try:
            reader = get(fmt).reader()
            if reader is None or fmt in (FORMAT_ID, "pickle"):
                raise RepoError(f"shard {shard} is a {get(fmt).title}, not a weights file",
                                path=spath, format=fmt, hint="a shard must be a safetensors "
                                "or torch.save file")
            ck = reader(spath, Options(limits=limits))
        except ModelportError as exc:
            exc.located(path=spath)
            raise
        size += ck.file_size
        shard_info.append({"file": shard, "format": fmt, "tensors": len(ck.weights)})
        for name, t in ck.weights.items():
            if name in tree:
                raise RepoError(f"tensor {name!r} is in two shards", path=spath, tensor=name)
            if wmap and wmap.get(name) != shard:
                raise RepoError(f"tensor {name!r} is in {shard} but the index places it in "
                                f"{wmap.get(name)}", path=spath, tensor=name)
            tree[name] = t
    absent = [n for n in wmap if n not in tree]
    if absent:
        raise RepoError(f"tensor {absent[0]!r} is in the index but in no shard",
                        path=os.path.join(path, wmap[absent[0]]), tensor=absent[0],
                        hint=f"{len(absent)} tensors missing; download the repo again")
    info: dict[str, Any] = {"shards": shard_info, "index": index}
    cfg = os.path.join(path, "config.json")
    if os.path.exists(cfg):
        info["config"] = _read_json(cfg, limits)
    ck = classify(path, FORMAT_ID, tree, info=info, select_path=select, file_size=size)
    if "config" in info:
        ck.metadata = {"config": info["config"]}
    return ck


def read(path: str, options: Options) -> Checkpoint:
    return open(path, options.limits, select=options.select)


def _sniff(probe: Probe) -> bool:
    names = set(probe.listing)
    return bool(names & set(INDEXES) or names & set(SINGLES) or
                any(_SHARD.match(n) for n in names))


# -- PEFT adapter folders ------------------------------------------------------------------------
#
#     adapter_config.json          peft_type, r, lora_alpha, target_modules, base model, ...
#     adapter_model.safetensors    or adapter_model.bin (a torch.save zip): the adapter's tensors
#
# (peft ``PeftModel.save_pretrained``; peft/utils/constants.py names the files.) The folder's
# weights are the adapter's tensors; modelport.lora reads the pairs out of them.

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def _sniff_adapter(probe: Probe) -> bool:
    names = set(probe.listing)
    return ADAPTER_CONFIG in names and bool(names & set(ADAPTER_WEIGHTS))


def read_adapter(path: str, options: Options) -> Checkpoint:
    from .. import detect
    from . import get

    names = set(os.listdir(path))
    weights = next(n for n in ADAPTER_WEIGHTS if n in names)
    wpath = os.path.join(path, weights)
    fmt = detect.sniff(wpath, options.limits)
    reader = get(fmt).reader()
    if reader is None or fmt in (FORMAT_ID, "pickle", "peft-adapter"):
        raise RepoError(f"{weights} is a {get(fmt).title}, not a weights file", path=wpath,
                        format=fmt, hint="a PEFT adapter holds safetensors or torch.save weights")
    try:
        inner = reader(wpath, Options(limits=options.limits))
    except ModelportError as exc:
        exc.located(path=wpath)
        raise
    cfg = _read_json(os.path.join(path, ADAPTER_CONFIG), options.limits)
    if not isinstance(cfg, dict):
        raise RepoError("adapter_config.json is not a JSON object",
                        path=os.path.join(path, ADAPTER_CONFIG))
    info: dict[str, Any] = {"adapter_config": cfg, "weights_file": weights, "weights_format": fmt,
                            "metadata": inner.info.get("metadata") or {}}
    ck = classify(path, "peft-adapter", dict(inner.weights), info=info,
                  select_path=options.select, file_size=inner.file_size)
    ck.metadata = {"adapter_config": cfg}
    return ck


FORMATS = (
    Format("hf-repo", "huggingface", _sniff, order=80, folder=True,
           title="Hugging Face model folder", open=f"{__name__}:read"),
    Format("peft-adapter", "huggingface", _sniff_adapter, order=79, folder=True,
           title="PEFT adapter folder", open=f"{__name__}:read_adapter"),
)
