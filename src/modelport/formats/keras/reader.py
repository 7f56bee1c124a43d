"""Keras files: HDF5 ``.h5`` (whole models and ``save_weights``), Keras 3 ``.keras`` zips and
``.weights.h5``, read with modelport's own HDF5 reader (``containers/hdf5.py``, why not h5py:
see there). Nothing Keras would import or run is touched; configs are parsed as JSON.

    legacy .h5 whole model (tf.keras 2, and Keras 3's ``model.save("x.h5")``)
        /  attrs: model_config (JSON), training_config (JSON), keras_version, backend
        /model_weights  attrs: layer_names[, layer_names0, 1 ...: split when over 64 KB]
            /<layer>    attrs: weight_names ("dense/kernel:0" in tf.keras, the variable's
                        path in Keras 3); datasets at those paths inside the layer group
        /optimizer_weights  attrs: weight_names; datasets likewise (training state)
    legacy save_weights .h5: the model_weights layout at the root
    Keras 3 .weights.h5
        /layers/<snake_case class>[_n]/vars/<i>    a layer's variables in its own order
        /optimizer/vars/<i>                        the optimizer's variables
    Keras 3 .keras: a zip of config.json (the model's config), metadata.json (keras_version,
        date_saved) and model.weights.h5 (the layout above); assets/ when layers have them

Weights are named as Keras names them: legacy files by their ``weight_names`` (``dense/kernel``,
tf.keras's ``:0`` output suffix dropped), Keras 3 files by their storage path
(``layers/dense/vars/0``), which ``inspect`` maps back to the layer names of the config. The kind
is ``full-model`` when a config is present, ``training-checkpoint`` for weights with optimizer
variables, else ``weights``. Layouts stay as Keras stores them (a Dense kernel is [in, out]).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from typing import Any

from ...classify import classify
from ...containers.hdf5 import SIGNATURE, Dataset, Group, H5File
from ...containers.zip import ZipArchive
from ...dtypes import by_name, by_numpy
from ...errors import LimitExceeded, MalformedHeader, ModelportError, Truncated
from ...limits import DEFAULT_LIMITS, Limits
from ...model import Checkpoint, Storage, TensorEntry
from ...tensors import storage_buffer
from ..base import Options

__all__ = ["HDF5_MAGIC", "open_h5", "open_keras", "read_h5", "read_keras", "h5_in_keras",
           "snake_case"]

HDF5_MAGIC = SIGNATURE
_OUTPUT_SUFFIX = re.compile(r":\d+$")  # tf.keras names variables by their op output: kernel:0
_LAYOUT = ("layouts as Keras stores them: Dense kernel [in, out], Conv2D kernel "
           "[h, w, in, out], Embedding [vocab, dim] (PyTorch's nn.Linear.weight is [out, in]: "
           "transpose when porting)")


# -- HDF5 views ----------------------------------------------------------------------------------


class _H5:
    """An HDF5 file (or zip member) opened for reading entries: ``base`` is where the buffer
    starts in the file on disk (None when it was decompressed into memory)."""

    def __init__(self, buf: memoryview, path: str | None, base: int, limits: Limits) -> None:
        self.file = H5File(buf, limits)
        self.path = path
        self.base = base

    def entry(self, name: str, ds: Dataset) -> TensorEntry | None:
        t = ds.dtype
        if t.numpy is None:
            return None
        dtype = by_name("BF16") if t.numpy == "bfloat16" else by_numpy(t.numpy)
        if dtype is None:
            return None
        self.file.check(ds)
        nbytes = ds.numel * t.size
        in_place = ds.layout in ("contiguous", "compact") and ds.offset is not None and \
            (t.numpy[0] != ">" or t.size == 1) and self.path is not None
        if in_place:
            assert ds.offset is not None and self.path is not None
            storage = Storage(nbytes=nbytes, path=self.path, offset=self.base + ds.offset,
                              key=ds.path)
        elif ds.layout != "chunked" and ds.offset is not None and self.path is None \
                and (t.numpy[0] != ">" or t.size == 1):
            storage = Storage(nbytes=nbytes, data=self.file.buf[ds.offset:ds.offset + nbytes],
                              key=ds.path)
        else:
            storage = Storage(nbytes=nbytes, data=self.file.decode(ds), key=ds.path)
        return TensorEntry(name, dtype, ds.shape, storage)


def _attr_list(attrs: dict[str, Any], name: str) -> list[str]:
    """An attribute Keras may split in chunks (``layer_names0``, ``layer_names1`` ...) when it
    would pass HDF5's 64 KB object-header limit (legacy_h5_format.save_attributes_to_hdf5_group)."""
    if name in attrs:
        v = attrs[name]
        return [str(x) for x in v] if isinstance(v, list) else [str(v)]
    out: list[str] = []
    i = 0
    while f"{name}{i}" in attrs:
        v = attrs[f"{name}{i}"]
        out += [str(x) for x in v] if isinstance(v, list) else [str(v)]
        i += 1
    return out


def _json_attr(attrs: dict[str, Any], name: str) -> Any:
    raw = attrs.get(name)
    if not isinstance(raw, str):
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise MalformedHeader(f"attribute {name} is not JSON: {exc}",
                              hint="the file is corrupt") from exc


def _legacy_group(h5: _H5, g: Group, prefix: str, out: dict[str, TensorEntry],
                  skipped: list[dict[str, Any]]) -> list[str]:
    """Weights of a legacy ``model_weights``-style group, in ``layer_names`` order, each layer's
    in ``weight_names`` order; datasets no name lists come after (nothing is hidden). Returns
    the layer names."""
    layers = _attr_list(g.attrs, "layer_names")
    order = layers + [n for n in g.members if n not in layers]
    for lname in order:
        lg = g.members.get(lname)
        if lg is None:
            raise MalformedHeader(f"layer {lname!r} is listed in layer_names but has no group",
                                  hint="the file is corrupt")
        if isinstance(lg, Dataset):
            _add(h5, prefix + lname, lg, out, skipped)
            continue
        listed = _attr_list(lg.attrs, "weight_names")
        seen: set[int] = set()
        for wname in listed:
            ds = lg.get(wname)
            if not isinstance(ds, Dataset):
                raise MalformedHeader(f"weight {wname!r} of layer {lname!r} is listed but "
                                      "missing", tensor=wname, hint="the file is corrupt")
            seen.add(id(ds))
            _add(h5, prefix + _OUTPUT_SUFFIX.sub("", wname), ds, out, skipped)
        for ds in lg.walk():
            if id(ds) not in seen:
                _add(h5, prefix + ds.path[len(g.path):].lstrip("/"), ds, out, skipped)
    return layers


def _add(h5: _H5, name: str, ds: Dataset, out: dict[str, TensorEntry],
         skipped: list[dict[str, Any]]) -> None:
    from ...classify import unique_name

    name = unique_name(name, out)
    entry = h5.entry(name, ds)
    if entry is None:
        skipped.append({"name": name, "dtype": ds.dtype.name, "shape": list(ds.shape),
                        "reason": "not a numeric tensor"})
        return
    out[name] = entry


def _read(h5: _H5, config: Any = None, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The HDF5 layout Keras wrote: weights, optimizer state, attrs, and what kind it is."""
    root = h5.file.root
    weights: dict[str, TensorEntry] = {}
    optimizer: dict[str, TensorEntry] = {}
    skipped: list[dict[str, Any]] = []
    attrs = root.attrs
    layout = "generic"
    layers: list[str] = []
    if "model_config" in attrs or isinstance(root.members.get("model_weights"), Group):
        layout = "legacy-model"
        mw = root.members.get("model_weights")
        if isinstance(mw, Group):
            layers = _legacy_group(h5, mw, "", weights, skipped)
        ow = root.members.get("optimizer_weights")
        if isinstance(ow, Group):
            names = _attr_list(ow.attrs, "weight_names")
            for wname in names:
                ds = ow.get(wname)
                if not isinstance(ds, Dataset):
                    raise MalformedHeader(f"optimizer weight {wname!r} is listed but missing",
                                          tensor=wname, hint="the file is corrupt")
                _add(h5, _OUTPUT_SUFFIX.sub("", wname), ds, optimizer, skipped)
            if not names:
                for ds in ow.walk():
                    _add(h5, ds.path.split("/", 2)[-1], ds, optimizer, skipped)
        config = _json_attr(attrs, "model_config")
    elif _attr_list(attrs, "layer_names"):
        layout = "legacy-weights"
        layers = _legacy_group(h5, root, "", weights, skipped)
    else:
        if isinstance(root.members.get("layers"), Group) or \
                isinstance(root.members.get("optimizer"), Group):
            layout = "keras3"
        for ds in root.walk():
            name = ds.path.lstrip("/")
            target = optimizer if layout == "keras3" and name.startswith("optimizer/") \
                else weights
            _add(h5, name, ds, target, skipped)
    meta: dict[str, Any] = {}
    for key in ("keras_version", "backend"):
        if isinstance(attrs.get(key), str):
            meta[key] = attrs[key]
    if metadata:
        meta.update({k: v for k, v in metadata.items() if isinstance(v, (str, int, float))})
    training = _json_attr(attrs, "training_config")
    if training is not None:
        meta["training_config"] = training
    return {"weights": weights, "optimizer": optimizer, "skipped": skipped, "layout": layout,
            "layers": layers, "config": config, "metadata": meta}


def _checkpoint(path: str, fmt: str, got: dict[str, Any], options: Options,
                size: int) -> Checkpoint:
    config = got["config"]
    tree: dict[str, Any] = {"weights": got["weights"]}
    if got["optimizer"]:
        tree["optimizer"] = got["optimizer"]
    select = options.select if options.select is not None else "weights"
    if config is not None:
        kind = "full-model"
    elif got["optimizer"]:
        kind = "training-checkpoint"
    else:
        kind = "weights"
    model = summarize_config(config) if config is not None else {}
    if got["layout"] == "keras3" and model.get("layers"):
        # HDF5 lists a group's members by name; Keras users read a model in layer order.
        rank = {la["folder"]: i for i, la in enumerate(model["layers"])}
        names = list(got["weights"])
        order = sorted(range(len(names)), key=lambda i: (
            rank.get("/".join(names[i].split("/")[:2]), len(rank)), i))
        tree["weights"] = {names[i]: got["weights"][names[i]] for i in order}
    ck = classify(path, fmt, tree, kind=kind, select_path=select, file_size=size)
    ck.metadata = dict(got["metadata"])
    info: dict[str, Any] = {"layout": got["layout"], "skipped_tensors": got["skipped"]}
    if config is not None:
        info["config"] = config
        info["model"] = model
    ck.info["keras"] = info
    ck.info["summary"] = _summary(ck, got)
    ck.needs.append(_needs(ck, got))
    return ck


# -- config summary -------------------------------------------------------------------------------


def snake_case(name: str) -> str:
    """keras.src.utils.naming.to_snake_case: how Keras 3 names a layer's weights folder."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
    return name


def _layer_list(config: Any) -> list[dict[str, Any]]:
    inner = config.get("config") if isinstance(config, dict) else None
    layers = inner.get("layers") if isinstance(inner, dict) else None
    return [la for la in layers if isinstance(la, dict)] if isinstance(layers, list) else []


def summarize_config(config: Any) -> dict[str, Any]:
    """Model class and name, its layers (name, class, Keras 3 weight folder), input shapes."""
    if not isinstance(config, dict):
        return {}
    inner: dict[str, Any] = config["config"] if isinstance(config.get("config"), dict) else {}
    used: dict[str, int] = {}
    layers, inputs = [], []
    for la in _layer_list(config):
        cls = str(la.get("class_name"))
        lc: dict[str, Any] = la["config"] if isinstance(la.get("config"), dict) else {}
        name = str(la.get("name") or lc.get("name") or "")
        if cls == "InputLayer":
            shape = lc.get("batch_shape") or lc.get("batch_input_shape")
            inputs.append({"name": name, "shape": shape, "dtype": lc.get("dtype")})
            continue
        folder = snake_case(cls)
        if folder in used:  # saving_lib._save_container_state's naming of a list's items
            used[folder] += 1
            folder = f"{folder}_{used[folder]}"
        else:
            used[folder] = 0
        layers.append({"name": name, "class_name": cls, "folder": f"layers/{folder}"})
    if not inputs:
        for key in ("build_input_shape", "batch_input_shape"):
            if inner.get(key) is not None:
                inputs.append({"name": "input", "shape": inner[key], "dtype": None})
                break
        else:
            build = config.get("build_config")
            if isinstance(build, dict) and build.get("input_shape") is not None:
                inputs.append({"name": "input", "shape": build["input_shape"], "dtype": None})
    return {"class_name": config.get("class_name"), "name": inner.get("name"),
            "layers": layers, "inputs": inputs}


def _shape(shape: Any) -> str:
    if not isinstance(shape, list):
        return str(shape)
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _summary(ck: Checkpoint, got: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    model = ck.info["keras"].get("model")
    meta = got["metadata"]
    version = meta.get("keras_version")
    backend = meta.get("backend")
    if model:
        kinds = Counter(la["class_name"] for la in model["layers"])
        top = ", ".join(f"{k} {v}" for k, v in kinds.most_common(6))
        out["keras"] = (f"{model['class_name']} {model['name']!r}: {len(model['layers'])} "
                        f"layers ({top})")
        out["inputs"] = ", ".join(f"{i['name']} {i.get('dtype') or ''}{_shape(i['shape'])}"
                                  for i in model["inputs"]) or "(not recorded)"
    if version or backend:
        out["saved by"] = "Keras " + " ".join(filter(None, [
            str(version) if version else None, f"({backend} backend)" if backend else None]))
    out["layout"] = _LAYOUT
    if got["optimizer"]:
        opt = (meta.get("training_config") or {}).get("optimizer_config", {}) \
            if isinstance(meta.get("training_config"), dict) else {}
        name = opt.get("class_name") if isinstance(opt, dict) else None
        out["optimizer"] = f"{name + ': ' if name else ''}{len(got['optimizer'])} tensors " \
                           "(other tensors; convert --full keeps them)"
    if model and got["layout"] == "keras3":
        out["layers"] = [f"{la['folder']:<32} {la['name']} ({la['class_name']})"
                         for la in model["layers"]]
    if got["skipped"]:
        out["skipped"] = "; ".join(f"{s['name']}: {s['reason']}" for s in got["skipped"][:4])
    return out


def _needs(ck: Checkpoint, got: dict[str, Any]) -> str:
    version = got["metadata"].get("keras_version")
    if ck.kind == "full-model":
        text = "a Keras model: keras.models.load_model needs Keras" + \
            (f" {version}" if version else "")
        from ...scan.keras import config_code

        lambdas, custom = config_code(got["config"])
        if lambdas:
            text += f"; its Lambda layers ({', '.join(lambdas[:4])}) load only with " \
                    "safe_mode=False, which runs their marshalled bytecode"
        if custom:
            text += f"; custom objects ({', '.join(custom[:4])}) need their code registered"
        return text + "; its weights can be extracted without Keras"
    return "Keras weights: model.load_weights(path) loads them into a model built by the " \
           "same code (layer names and order must match); modelport extracts them without Keras"


# -- opening -------------------------------------------------------------------------------------


def open_h5(path: str, limits: Limits = DEFAULT_LIMITS) -> tuple[dict[str, Any], int]:
    size = os.path.getsize(path)
    if size < 8:
        raise Truncated(f"{size} bytes: too short for an HDF5 file", offset=0,
                        hint="the file is truncated; copy it again")
    buf = storage_buffer(Storage(nbytes=size, path=path))
    return _read(_H5(buf, path, 0, limits)), size


def h5_in_keras(path: str, limits: Limits = DEFAULT_LIMITS) -> tuple[
        dict[str, Any], dict[str, Any], memoryview | None, str | None, int]:
    """A .keras archive's config.json, metadata.json, and its weights HDF5: (config, metadata,
    HDF5 buffer or None, path of the buffer's file or None when decompressed, base offset)."""
    archive = ZipArchive.open(path, limits)
    members = archive.by_name()
    parsed: dict[str, Any] = {}
    for name in ("config.json", "metadata.json"):
        m = members.get(name)
        if m is None:
            parsed[name] = {}
            continue
        if m.usize > limits.header_bytes:
            raise LimitExceeded(f"{name} is {m.usize} bytes", member=name,
                                hint="raise Limits.header_bytes if the model is genuine")
        try:
            parsed[name] = json.loads(archive.read(m, limits))
        except (ValueError, RecursionError) as exc:
            raise MalformedHeader(f"not JSON: {exc}", member=name,
                                  hint="the archive is corrupt") from exc
    m = members.get("model.weights.h5")
    if m is None:
        return parsed["config.json"], parsed["metadata.json"], None, None, 0
    if m.stored:
        whole = storage_buffer(Storage(nbytes=archive.size, path=path))
        if m.data_offset + m.usize > archive.size:
            raise Truncated("model.weights.h5 runs past the end of the archive",
                            member=m.name, offset=m.data_offset,
                            hint="the file is truncated; copy it again")
        buf = whole[m.data_offset:m.data_offset + m.usize]
        return parsed["config.json"], parsed["metadata.json"], buf, path, m.data_offset
    data = archive.read(m, limits)  # deflated: decoded into memory, within the limits
    return parsed["config.json"], parsed["metadata.json"], memoryview(data), None, 0


def read_h5(path: str, options: Options) -> Checkpoint:
    path = os.fspath(path)
    try:
        got, size = open_h5(path, options.limits)
    except ModelportError as err:
        err.located(path=path, format="keras-h5")
        raise
    return _checkpoint(path, "keras-h5", got, options, size)


def read_keras(path: str, options: Options) -> Checkpoint:
    path = os.fspath(path)
    try:
        config, metadata, buf, where, base = h5_in_keras(path, options.limits)
        if buf is None:
            got: dict[str, Any] = {"weights": {}, "optimizer": {}, "skipped": [],
                                   "layout": "keras3", "layers": [], "config": config,
                                   "metadata": {}}
        else:
            try:
                got = _read(_H5(buf, where, base, options.limits))
            except ModelportError as err:
                err.located(member="model.weights.h5")
                raise
        got["config"] = config or None
        got["metadata"].update({k: v for k, v in metadata.items()
                                if isinstance(v, (str, int, float))})
        got["layout"] = "keras3"
    except ModelportError as err:
        err.located(path=path, format="keras")
        raise
    return _checkpoint(path, "keras", got, options, os.path.getsize(path))


def open_keras(path: str, limits: Limits = DEFAULT_LIMITS) -> Checkpoint:
    return read_keras(path, Options(limits=limits))
