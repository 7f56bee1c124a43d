"""Keras configs judged by what Keras would import, call or run when loading them.

A Keras model's config is JSON that names code: every object is ``{"module", "class_name",
"registered_name", "config"}`` (Keras 3 / tf.keras 2.13+) or a bare ``class_name`` (older
tf.keras), functions are ``{"class_name": "function", "module", "config": name}``, and Lambda
layers carry marshalled Python bytecode. Known abuses, one rule each:

    keras-lambda        Lambda bytecode (CVE-2024-3660: run by load_model before Keras 2.13;
                        still run with safe_mode=False; CVE-2025-9905: .h5 Lambdas ignored
                        safe_mode) -- parsed by ``bytecode``, never unmarshalled, and listed
    keras-import        a module outside Keras's built-ins: Keras 3 imports the ``module`` it
                        is given (CVE-2025-1550, arbitrary import from config.json)
    keras-gadget        a known dangerous callable or module: keras.utils.get_file (CVE-2025-
                        8747, safe_mode bypass that fetches files), enable_unsafe_deserialization
                        (CVE-2025-9906), os/subprocess/builtins ...
    keras-torch-module  a TorchModuleWrapper's torch.save blob (torch.load runs its pickle): the
                        blob goes through the pickle scanner like any other payload
    keras-tf-op         a tf.keras TFOpLambda naming file I/O or Python-function ops
    keras-custom-object an object Keras does not ship: loading needs its code (LOW)
    keras-config-url / keras-config-path   URLs and absolute paths in a config (LOW)

The allowlist is data (``ALLOWED_MODULES``: one reason per Keras submodule) and fails closed:
an unknown module is a finding, never silently fine.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from typing import Any

from ..errors import ModelportError
from .bytecode import MarshalError, disassemble, parse_code
from .context import Scan
from .findings import Severity as S

__all__ = ["ALLOWED_MODULES", "KERAS_CLASSES", "scan_h5", "scan_keras", "walk_config",
           "config_code"]

# Keras submodules whose objects the deserializer may build: each with why it is safe to load.
_SAFE_SUBMODULES = {
    "layers": "built-in layers: their from_config builds weights and settings, no code",
    "models": "Model, Sequential, Functional containers",
    "engine": "tf.keras 2's Functional, Sequential and InputLayer",
    "optimizers": "built-in optimizers and learning-rate schedules",
    "losses": "built-in losses",
    "metrics": "built-in metrics",
    "initializers": "built-in weight initializers",
    "regularizers": "built-in regularizers",
    "constraints": "built-in weight constraints",
    "activations": "built-in activation functions",
    "dtype_policies": "mixed-precision dtype policies",
    "mixed_precision": "mixed-precision dtype policies (tf.keras)",
    "ops": "keras.ops operations recorded as nodes of a Functional graph",
    "quantizers": "Keras 3 quantization configs",
}
_PACKAGES = ("keras", "keras.src", "tf_keras", "tf_keras.src", "tensorflow.keras",
             "tensorflow.python.keras")
ALLOWED_MODULES: dict[str, str] = {
    f"{pkg}.{sub}": why for pkg in _PACKAGES for sub, why in _SAFE_SUBMODULES.items()}
# The bare package: Keras 3 writes {"module": "keras", "class_name": "DTypePolicy"} and
# "Sequential"; functions under it are checked by name below.
ALLOWED_MODULES.update({pkg: "Keras's public namespace (DTypePolicy, Sequential, Model)"
                        for pkg in ("keras", "tf_keras", "tensorflow.keras")})

# Modules and callables that are code execution or file access when Keras imports or calls them.
_GADGET_ROOTS = frozenset({
    "os", "posix", "nt", "subprocess", "builtins", "__builtin__", "sys", "shutil", "importlib",
    "runpy", "pickle", "_pickle", "marshal", "socket", "ctypes", "code", "codeop", "pty",
    "webbrowser", "requests", "urllib", "urllib2", "http", "ftplib", "smtplib", "tempfile",
    "pathlib", "io", "multiprocessing", "threading", "asyncio", "platform", "dill", "joblib",
    "torch", "numpy", "tensorflow.io", "tensorflow.compat"})
_GADGET_CALLS = re.compile(
    r"(^|\.)(get_file|enable_unsafe_deserialization|load_model|load_weights|save_model|"
    r"save_weights|register_keras_serializable|exec|eval|system|popen|py_function|"
    r"numpy_function|py_func|write_file|read_file)$")
# Names in Lambda bytecode that mean the code reaches the system.
_DANGEROUS_NAMES = frozenset({
    "__import__", "import_module", "eval", "exec", "compile", "open", "system", "popen",
    "Popen", "run", "call", "check_output", "spawn", "execv", "execve", "fork", "remove",
    "unlink", "rmtree", "os", "subprocess", "socket", "urlopen", "getattr", "globals",
    "__builtins__", "loads", "load", "write_file", "read_file", "py_function"})
_TF_OP_RISK = re.compile(r"^(io\.|compat\.v1\.io\.|compat\.v1\.py_func|py_function|"
                         r"numpy_function|debugging\.|print$|compat\.v1\.gfile)")
# Objects Keras serializes with special markers, not classes it imports.
_MARKERS = frozenset({"__tuple__", "__bytes__", "__numpy__", "__tensor__", "__typespec__",
                      "__slice__", "__ellipsis__", "__keras_tensor__", "__lambda__"})
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_PATH = re.compile(r"^(/|~/|[A-Za-z]:[\\/]|\\\\)[^\s]")

# Built-in class and function names of Keras 3.15 (layers, optimizers, losses, metrics,
# initializers, regularizers, constraints, activations, models, dtype policies), for configs
# without a ``module`` key: tf.keras resolves those names among its built-ins and the
# custom_objects the caller passes, so a name outside this set needs the user's code.
_CLASS_TEXT = """
AUC AWQDTypePolicy Accuracy Activation ActivityRegularization Adadelta Adafactor Adagrad Adam
AdamW Adamax AdaptiveAveragePooling1D AdaptiveAveragePooling2D AdaptiveAveragePooling3D
AdaptiveMaxPooling1D AdaptiveMaxPooling2D AdaptiveMaxPooling3D Add AdditiveAttention
AlphaDropout Attention AugMix AutoContrast Average AveragePooling1D AveragePooling2D
AveragePooling3D AvgPool1D AvgPool2D AvgPool3D BatchNormalization Bidirectional BinaryAccuracy
BinaryCrossentropy BinaryFocalCrossentropy BinaryIoU CTC CategoricalAccuracy
CategoricalCrossentropy CategoricalFocalCrossentropy CategoricalGeneralizedCrossEntropy
CategoricalHinge CategoryEncoding CenterCrop Circle Concatenate ConcordanceCorrelation
Constant Constraint ContrastLimitedAdaptiveHistogramEqualization Conv1D Conv1DTranspose Conv2D
Conv2DTranspose Conv3D Conv3DTranspose ConvLSTM1D ConvLSTM2D ConvLSTM3D Convolution1D
Convolution1DTranspose Convolution2D Convolution2DTranspose Convolution3D
Convolution3DTranspose CosineSimilarity Cropping1D Cropping2D Cropping3D CutMix DTypePolicy
DTypePolicyMap Dense DepthwiseConv1D DepthwiseConv2D Dice Discretization Dot Dropout ELU
EinsumDense Embedding Equalization F1Score FBetaScore FalseNegatives FalsePositives Flatten
FlaxLayer FloatDTypePolicy Ftrl Functional GPTQDTypePolicy GRU GRUCell GaussianDropout
GaussianNoise GlobalAveragePooling1D GlobalAveragePooling2D GlobalAveragePooling3D
GlobalAvgPool1D GlobalAvgPool2D GlobalAvgPool3D GlobalMaxPool1D GlobalMaxPool2D
GlobalMaxPool3D GlobalMaxPooling1D GlobalMaxPooling2D GlobalMaxPooling3D GlorotNormal
GlorotUniform GroupNormalization GroupQueryAttention HashedCrossing Hashing HeNormal HeUniform
Hinge Huber Identity IdentityInitializer Initializer InputLayer InputSpec Int4DTypePolicy
IntegerLookup IoU JaxLayer KLDivergence L1 L1L2 L2 LSTM LSTMCell Lamb Lambda Layer
LayerNormalization LeakyReLU LecunNormal LecunUniform Lion LogCosh LogCoshError Loss
LossScaleOptimizer Masking MaxNorm MaxNumBoundingBoxes MaxPool1D MaxPool2D MaxPool3D
MaxPooling1D MaxPooling2D MaxPooling3D Maximum Mean MeanAbsoluteError
MeanAbsolutePercentageError MeanIoU MeanMetricWrapper MeanSquaredError
MeanSquaredLogarithmicError MelSpectrogram Metric MinMaxNorm Minimum MixUp Model
MultiHeadAttention MultiOptimizer Multiply Muon Nadam NonNeg Normalization OneHotIoU
OneHotMeanIoU Ones Optimizer OptimizerMap Orthogonal OrthogonalInitializer
OrthogonalRegularizer PReLU PearsonCorrelation Permute Pipeline Poisson Precision
PrecisionAtRecall QuantizedDTypePolicy QuantizedFloat8DTypePolicy R2Score RMSNormalization
RMSprop RNN RandAugment RandomBrightness RandomColorDegeneration RandomColorJitter
RandomContrast RandomCrop RandomElasticTransform RandomErasing RandomFlip RandomGaussianBlur
RandomGrayscale RandomHue RandomInvert RandomNormal RandomPerspective RandomPosterization
RandomRotation RandomSaturation RandomSharpness RandomShear RandomTranslation RandomUniform
RandomZoom ReLU Recall RecallAtPrecision Regularizer RepeatVector Rescaling Reshape Resizing
ReversibleEmbedding RootMeanSquaredError SGD STFT STFTInitializer STFTSpectrogram
ScheduleFreeAdamW SensitivityAtSpecificity SeparableConv1D SeparableConv2D
SeparableConvolution1D SeparableConvolution2D Sequential SimpleRNN SimpleRNNCell Softmax
Solarization SparseCategoricalAccuracy SparseCategoricalCrossentropy
SparseTopKCategoricalAccuracy SpatialDropout1D SpatialDropout2D SpatialDropout3D
SpecificityAtSensitivity SpectralNormalization SquaredHinge StackedRNNCells StringLookup
Subtract Sum TFSMLayer TextVectorization TimeDistributed TopKCategoricalAccuracy
TorchModuleWrapper TrueNegatives TruePositives TruncatedNormal Tversky UnitNorm
UnitNormalization UpSampling1D UpSampling2D UpSampling3D VarianceScaling Wrapper ZeroPadding1D
ZeroPadding2D ZeroPadding3D Zeros binary_accuracy binary_crossentropy
binary_focal_crossentropy categorical_accuracy categorical_crossentropy
categorical_focal_crossentropy categorical_generalized_cross_entropy categorical_hinge celu
circle concordance_correlation constant cosine_similarity ctc deserialize dice elu exponential
gelu get glorot_normal glorot_uniform glu hard_shrink hard_sigmoid hard_silu hard_swish
hard_tanh he_normal he_uniform hinge huber identity kl_divergence l1 l1_l2 l2 leaky_relu
lecun_normal lecun_uniform linear log_cosh log_sigmoid log_softmax max_norm
mean_absolute_error mean_absolute_percentage_error mean_squared_error
mean_squared_logarithmic_error min_max_norm mish non_neg ones orthogonal
orthogonal_regularizer pearson_correlation poisson random_normal random_uniform relu relu6
selu serialize sigmoid silu soft_shrink softmax softplus softsign sparse_categorical_accuracy
sparse_categorical_crossentropy sparse_plus sparse_sigmoid sparse_top_k_categorical_accuracy
sparsemax squared_hinge squareplus stft swish tanh tanh_shrink threshold
top_k_categorical_accuracy truncated_normal tversky unit_norm variance_scaling zeros
"""
KERAS_CLASSES = frozenset(_CLASS_TEXT.split()) | {
    "Functional", "Sequential", "Model", "InputLayer", "TFOpLambda", "SlicingOpLambda",
    "TensorFlowOpLayer", "KerasTensor", "Policy", "DTypePolicy", "function"}


class _Event:
    __slots__ = ("severity", "rule", "message", "subject", "why", "payload")

    def __init__(self, severity: S, rule: str, message: str, subject: str | None = None,
                 why: str = "", payload: bytes | None = None) -> None:
        self.severity, self.rule, self.message = severity, rule, message
        self.subject, self.why, self.payload = subject, why, payload


def _module_event(module: str, name: str, where: str) -> _Event | None:
    full = f"{module}.{name}" if name else module
    root = module.split(".")[0]
    if root in _GADGET_ROOTS or any(module == g or module.startswith(g + ".")
                                    for g in _GADGET_ROOTS if "." in g):
        return _Event(S.CRITICAL, "keras-gadget", f"{where} names {full}: Keras imports "
                      f"{module} while loading", full, "a module that runs commands, reads or "
                      "writes files or unpickles: loading the model can run anything")
    if _GADGET_CALLS.search(full):
        return _Event(S.CRITICAL, "keras-gadget", f"{where} names {full}", full,
                      "a callable that fetches or writes files, loads other models, turns off "
                      "safe_mode (CVE-2025-8747, CVE-2025-9906) or runs code")
    if module in ("keras", "tf_keras", "tensorflow.keras") and "." in name:
        return _Event(S.HIGH, "keras-import", f"{where} names {full}: a path into Keras outside "
                      "its built-in objects", full, "Keras resolves it by importing its module")
    if module in ALLOWED_MODULES or any(module.startswith(m + ".") for m in ALLOWED_MODULES
                                        if m not in ("keras", "tf_keras", "tensorflow.keras")):
        return None
    return _Event(S.HIGH, "keras-import", f"{where} names {full} from module {module!r}, which "
                  "is not part of Keras", full, "Keras 3 imports the module a config names "
                  "(CVE-2025-1550): importing runs the module's code")


def _lambda_event(value: Any, layer: str) -> _Event:
    where = f"Lambda layer {layer!r}"
    text = value[0] if isinstance(value, (list, tuple)) and value else value
    if not isinstance(text, str):
        return _Event(S.HIGH, "keras-lambda", f"{where} carries a function Keras would "
                      "unmarshal, in a form modelport cannot read", layer,
                      "Keras runs Lambda code when loading with safe_mode=False")
    try:
        raw = base64.b64decode(text.encode("ascii", "replace"))
        code = parse_code(raw)
    except (binascii.Error, ValueError, MarshalError) as exc:
        return _Event(S.HIGH, "keras-lambda", f"{where} carries marshalled data that is not "
                      f"a code object modelport can parse ({str(exc)[:120]})", layer,
                      "Keras unmarshals and runs it when loading with safe_mode=False")
    names = code.all_names()
    risky = sorted(set(names) & _DANGEROUS_NAMES)
    consts = [c for c in code.consts if c is not None][:8]
    listing = "; ".join(disassemble(code, 60))
    message = (f"{where} carries Python bytecode ({code.qualname} from {code.filename!r}): "
               f"names {names[:12]}, constants {[repr(c)[:100] for c in consts]}")
    if risky:
        message += f"; reaches {', '.join(risky)}"
    return _Event(S.CRITICAL if risky else S.HIGH, "keras-lambda", message, layer,
                  "load_model runs this code with safe_mode=False, and before Keras 2.13 "
                  "always (CVE-2024-3660); bytecode: " + listing[:1500])


def _walk(node: Any, where: str, depth: int = 0) -> Iterator[_Event]:
    if depth > 200:
        yield _Event(S.MEDIUM, "limit", f"{where}: config nests more than 200 levels", None,
                     "the rest of the config was not judged")
        return
    if isinstance(node, list):
        for v in node:
            yield from _walk(v, where, depth + 1)
        return
    if isinstance(node, str):
        if _URL.match(node):
            yield _Event(S.LOW, "keras-config-url", f"{where} holds the URL {node[:120]!r}",
                         node[:200], "a layer or callable may fetch it when the model loads")
        elif _PATH.match(node) and len(node) < 4096:
            yield _Event(S.LOW, "keras-config-path", f"{where} holds the path {node[:120]!r}",
                         node[:200], "a layer may read this file when the model loads")
        return
    if not isinstance(node, dict):
        return
    cls = node.get("class_name")
    config = node.get("config")
    cfg = config if isinstance(config, dict) else {}
    name = str(cfg.get("name") or node.get("name") or "")
    here = f"{where} > {name}" if name else where
    module = node.get("module")
    if cls == "__lambda__":
        value = cfg.get("code", cfg.get("value"))
        yield _lambda_event(value, name or where.rsplit("> ", 1)[-1])
        return
    if isinstance(cls, str):
        if isinstance(module, str) and module:
            fn = config if cls == "function" and isinstance(config, str) else ""
            ev = _module_event(module, fn or ("" if cls in _MARKERS else cls),
                               f"{here} ({cls})")
            if ev is not None:
                yield ev
        elif cls not in KERAS_CLASSES and cls not in _MARKERS:
            yield _Event(S.LOW, "keras-custom-object", f"{here}: {cls} is not a Keras "
                         "built-in", cls, "loading needs its code (custom_objects); nothing "
                         "in the file is imported for it")
        registered = node.get("registered_name")
        if isinstance(registered, str) and ">" in registered:
            yield _Event(S.LOW, "keras-custom-object", f"{here}: registered custom object "
                         f"{registered}", registered, "loading needs the package that "
                         "registers it")
        if cls == "Lambda":
            lfn = cfg.get("function")
            ftype = cfg.get("function_type")
            if ftype == "lambda" or (isinstance(lfn, (list, tuple)) and lfn):
                yield _lambda_event(lfn, name)
            elif isinstance(lfn, str):
                ev = _module_event(str(cfg.get("module") or "__main__"), lfn,
                                   f"{here} (Lambda)")
                if ev is not None:
                    yield ev
        if cls in ("TFOpLambda", "SlicingOpLambda") and isinstance(cfg.get("function"), str) \
                and _TF_OP_RISK.match(cfg["function"]):
            yield _Event(S.MEDIUM, "keras-tf-op", f"{here} calls tf.{cfg['function']}",
                         cfg["function"], "a TensorFlow op that touches files or runs Python")
        if cls == "TorchModuleWrapper" and isinstance(cfg.get("module"), str):
            try:
                blob = base64.b64decode(cfg["module"].encode("ascii", "replace"))
            except (binascii.Error, ValueError):
                blob = b""
            yield _Event(S.INFO, "keras-torch-module", f"{here}: a torch.save blob of "
                         f"{len(blob)} bytes that Keras passes to torch.load", name,
                         "torch.load runs its pickle: scanned as one", payload=blob)
            cfg = {k: v for k, v in cfg.items() if k != "module"}
    for key, value in node.items():
        if key in ("class_name", "module", "registered_name", "name"):
            continue
        if key == "config" and isinstance(value, dict):
            value = cfg
        yield from _walk(value, here, depth + 1)


def walk_config(scan: Scan, config: Any, member: str | None) -> None:
    """Judge one parsed config; findings go to ``scan``."""
    for ev in _walk(config, "config"):
        scan.add(ev.severity, ev.rule, ev.message, subject=ev.subject, member=member,
                 why=ev.why)
        if ev.payload is not None:
            label = f"{member + ' > ' if member else ''}TorchModuleWrapper {ev.subject}"
            if ev.payload:
                scan.bytes(ev.payload, member=label, loader=True)
            else:
                scan.error(f"{label}: the module blob is not base64; not scanned")


def config_code(config: Any) -> tuple[list[str], list[str]]:
    """Names of the Lambda layers and custom objects in a config (for inspect's note)."""
    lambdas, custom = [], []
    for ev in _walk(config, "config"):
        if ev.rule == "keras-lambda" and ev.subject:
            lambdas.append(ev.subject)
        elif ev.rule in ("keras-custom-object", "keras-import") and ev.subject:
            custom.append(ev.subject)
    return list(dict.fromkeys(lambdas)), list(dict.fromkeys(custom))


def _json_attrs(attrs: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for key, value in attrs.items():
        if isinstance(value, str) and value.lstrip().startswith(("{", "[")):
            try:
                yield key, json.loads(value)
            except (ValueError, RecursionError):
                if key in ("model_config", "training_config"):
                    raise


def _h5(scan: Scan, buf: memoryview, member: str | None) -> None:
    from ..containers.hdf5 import Group, H5File

    f = H5File(buf, scan.limits)
    stack: list[Group] = [f.root]
    while stack:
        g = stack.pop()
        for key, cfg in _json_attrs(g.attrs):
            walk_config(scan, cfg, "/".join(filter(None, [member, g.path.strip("/"), key])))
        for m in g.members.values():
            if isinstance(m, Group):
                stack.append(m)
            else:
                f.check(m)
    scan.note_scanned(f"HDF5 structure{' of ' + member if member else ''} and Keras config")


def scan_h5(scan: Scan, path: str) -> None:
    """The scanner's hook for ``keras-h5``: the HDF5 structure read under the limits and every
    JSON attribute (model_config, training_config) judged."""
    from ..model import Storage
    from ..tensors import storage_buffer

    try:
        import os

        buf = storage_buffer(Storage(nbytes=os.path.getsize(path), path=path))
        _h5(scan, buf, None)
    except ModelportError as exc:
        scan.error(str(exc.located(path=path)))
    except (ValueError, RecursionError) as exc:
        scan.error(f"{path}: a JSON attribute cannot be read ({exc}); not judged")


def scan_keras(scan: Scan, path: str) -> None:
    """The hook for ``.keras`` archives: every member by content (the generic zip pass), then
    config.json and metadata.json judged, and the weights HDF5 read under the limits."""
    from ..formats.keras.reader import h5_in_keras
    from .archives import scan_zip

    scan_zip(scan, path, member=None)
    try:
        config, metadata, buf, _, _ = h5_in_keras(path, scan.limits)
    except ModelportError as exc:
        scan.error(str(exc.located(path=path)))
        return
    walk_config(scan, config, "config.json")
    walk_config(scan, metadata, "metadata.json")
    scan.note_scanned("Keras config.json")
    if buf is not None:
        try:
            _h5(scan, buf, "model.weights.h5")
        except ModelportError as exc:
            scan.error(str(exc.located(path=path, member="model.weights.h5")))
        except (ValueError, RecursionError) as exc:
            scan.error(f"{path}: model.weights.h5: a JSON attribute cannot be read ({exc})")
