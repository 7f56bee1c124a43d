"""The scanner's policy, as data: what a pickle may import, and how bad everything else is.

Fail closed. A pickle may name only globals on ``ALLOWLIST`` (exact ``module.qualname``, one
justification each: why a loader calling or importing it cannot run attacker code). Everything
else is unsafe. ``PROFILES`` name the ecosystem objects that benign checkpoints carry (Lightning
hyper-parameters, transformers ``TrainingArguments``, numpy RNG state, OmegaConf configs): they
are reported as what they are (INFO), not as threats, but only while their arguments are plain
data; ``--strict`` turns profiles off. ``GADGETS`` (the denylist) only grades severity: a known
code-execution gadget is CRITICAL, an unknown import HIGH (called) or MEDIUM (only named).

Sources: torch/_weights_only_unpickler.py (``_get_allowed_globals``: what ``torch.load(weights_only
=True)`` accepts), torch/serialization.py and torch/_utils.py (what ``torch.save`` writes),
numpy ``ndarray.__reduce__``/``dtype.__reduce__`` and numpy/random/_pickle.py, and the public
bypasses of blocklist scanners (picklescan GHSA-655q-fx9r-782v, CVE-2025-1716 ``pip.main``,
GHSA-955r-x9j8-7rhh / GHSA-46h3-79wf-xr6c ``_operator``, CVE-2025-10157, CVE-2026-56315).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from ..errors import UsageError

__all__ = ["ALLOWLIST", "TORCHSCRIPT_ONLY", "PROFILES", "GADGETS", "LOADERS", "DECODERS",
           "Judgement", "judge", "UserAllow", "load_policy"]


def _family(names: str, why: str, prefix: str = "") -> dict[str, str]:
    return {prefix + n: why for n in names.split()}


_DTYPE_WHY = "a torch dtype: an enum value, written bare (torch.float32) by every torch.save"
_STORAGE_WHY = ("a torch storage class: names the element type of a persistent storage record; "
                "torch.load only looks it up")
_TENSOR_CLASS_WHY = "a legacy torch tensor type (torch._tensor_classes): a type marker"
_REBUILD_WHY = ("torch.save's tensor rebuild function: builds a tensor from a storage, offsets, "
                "sizes and strides (torch/_utils.py); in torch.load(weights_only=True)'s allowlist")
_PLAIN_WHY = "a builtin container or number type: builds plain data from plain data"
_NUMPY_WHY = "numpy's array/scalar reconstruction (ndarray.__reduce__): builds data from bytes"

# module.qualname -> why a loader importing or calling it runs no attacker code.
ALLOWLIST: dict[str, str] = {
    **_family("_rebuild_tensor _rebuild_tensor_v2 _rebuild_tensor_v3 _rebuild_parameter "
              "_rebuild_parameter_with_state _rebuild_qtensor _rebuild_sparse_tensor "
              "_rebuild_meta_tensor_no_storage _rebuild_nested_tensor _rebuild_wrapper_subclass "
              "_rebuild_device_tensor_from_numpy _rebuild_device_tensor_from_cpu_tensor",
              _REBUILD_WHY, "torch._utils."),
    "torch._tensor._rebuild_from_type_v2": "rebuilds a tensor subclass or a tensor with Python "
    "attributes: calls a rebuild function (itself checked) then restores plain attributes",
    "torch.serialization._get_layout": "maps a layout name (torch.sparse_coo) to its enum value",
    "torch.Size": "a tuple of ints",
    "torch.device": "a device name such as 'cpu' or 'cuda:0'",
    "torch.Tensor": "the tensor type, as the type argument of _rebuild_from_type_v2",
    "torch.nn.parameter.Parameter": "the Parameter type, as the type argument of "
    "_rebuild_from_type_v2",
    **_family("per_tensor_affine per_tensor_symmetric per_channel_affine per_channel_symmetric "
              "per_channel_affine_float_qparams", "a quantization scheme enum value", "torch."),
    **_family("float64 float32 float16 bfloat16 complex32 complex64 complex128 bool "
              "uint8 uint16 uint32 uint64 int8 int16 int32 int64 qint8 qint32 quint8 quint4x2 "
              "quint2x4 bits1x8 bits2x4 bits4x2 bits8 bits16 float8_e4m3fn float8_e4m3fnuz "
              "float8_e5m2 float8_e5m2fnuz float8_e8m0fnu float4_e2m1fn_x2 uint1 uint2 uint3 "
              "uint4 uint5 uint6 uint7 int1 int2 int3 int4 int5 int6 int7", _DTYPE_WHY,
              "torch."),
    **_family("BFloat16Storage BoolStorage ByteStorage CharStorage ComplexDoubleStorage "
              "ComplexFloatStorage DoubleStorage FloatStorage HalfStorage IntStorage LongStorage "
              "QInt32Storage QInt8Storage QUInt2x4Storage QUInt4x2Storage QUInt8Storage "
              "ShortStorage storage.TypedStorage storage.UntypedStorage", _STORAGE_WHY, "torch."),
    **_family("BFloat16Storage BoolStorage ByteStorage CharStorage ComplexDoubleStorage "
              "ComplexFloatStorage DoubleStorage FloatStorage HalfStorage IntStorage LongStorage "
              "ShortStorage", _STORAGE_WHY, "torch.cuda."),
    **{f"torch.{sub}{t}Tensor": _TENSOR_CLASS_WHY
       for sub in ("", "cuda.", "sparse.", "cuda.sparse.")
       for t in ["BFloat16", "Bool", "Byte", "Char", "Double", "Float", "Half", "Int", "Long", "Short"]
       if not (sub.endswith("sparse.") and t == "Bool")},
    "collections.OrderedDict": "a dict that keeps insertion order (every state_dict)",
    "collections.Counter": "a dict of counts (in torch.load(weights_only=True)'s allowlist)",
    "collections.defaultdict": "a dict; its factory is a global of its own, checked on its own",
    "_codecs.encode": "how protocol 2 pickles bytes: encode(text, 'latin1') (Lib/pickle.py)",
    "copyreg._reconstructor": "how protocols 0/1 pickle plain instances: object.__new__(cls); "
    "the class is a global of its own, checked on its own",
    **_family("__newobj__ __newobj_ex__", "NEWOBJ as a function: cls.__new__(cls, *args); the "
              "class is a global of its own, checked on its own", "copyreg."),
    **_family("pathlib.Path pathlib.PosixPath pathlib.WindowsPath pathlib.PurePath "
              "pathlib.PurePosixPath pathlib.PureWindowsPath datetime.datetime datetime.date "
              "datetime.time datetime.timedelta datetime.timezone uuid.UUID decimal.Decimal "
              "fractions.Fraction", "a value type (paths and dates in hyper-parameters): "
              "built from strings and numbers, it touches nothing"),
    **_family("set frozenset list tuple dict bytearray bytes complex slice int float bool str "
              "object", _PLAIN_WHY, "builtins."),
    **_family("core.multiarray._reconstruct _core.multiarray._reconstruct core.multiarray.scalar "
              "_core.multiarray.scalar core.numeric._frombuffer _core.numeric._frombuffer",
              _NUMPY_WHY, "numpy."),
    "numpy.ndarray": "the array type, as the class argument of _reconstruct",
    "numpy.matrix": "numpy's 2-D array subclass, as the class argument of _reconstruct",
    "numpy.dtype": "builds a dtype from a type code such as '<f4' (no object is loaded)",
    "joblib.numpy_pickle.NumpyArrayWrapper": "joblib's placeholder for an ndarray whose bytes "
    "follow it in the stream (containers/joblib.py steps over them; an object array's own "
    "pickle is judged like the outer one)",
}

# Globals only a TorchScript archive's own pickles may name: torch.jit.load resolves
# ``__torch__.*`` against the archive's code/ (checked separately) and its C++ unpickler knows
# the jit list builders; anywhere else they are unknown imports.
TORCHSCRIPT_ONLY: dict[str, str] = {
    "__torch__.": "a TorchScript class compiled from this archive's code/ folder",
    **_family("build_intlist build_tensorlist build_doublelist build_boollist "
              "build_tensor_from_id restore_type_tag",
              "TorchScript's pickle helper for typed lists (torch/jit/_pickle.py)",
              "torch.jit._pickle."),
}

# Ecosystem objects benign checkpoints carry: reported as INFO, never as threats, while their
# arguments are plain data. Constructing them runs only their own __init__/__setstate__.
PROFILES: dict[str, dict[str, str]] = {
    "lightning": {
        "argparse.Namespace": "hyper-parameters from argparse (save_hyperparameters(args))",
        "lightning.fabric.utilities.data.AttributeDict": "Lightning's hparams dict",
        "lightning_fabric.utilities.data.AttributeDict": "Lightning's hparams dict",
        "pytorch_lightning.utilities.parsing.AttributeDict": "Lightning's hparams dict",
        "lightning.pytorch.utilities.parsing.AttributeDict": "Lightning's hparams dict",
    },
    "omegaconf": {
        **_family("dictconfig.DictConfig listconfig.ListConfig base.ContainerMetadata "
                  "base.Metadata nodes.AnyNode nodes.StringNode nodes.IntegerNode "
                  "nodes.FloatNode nodes.BooleanNode nodes.EnumNode nodes.BytesNode "
                  "nodes.PathNode", "an OmegaConf/Hydra config container or node",
                  "omegaconf."),
        "typing.Any": "OmegaConf records typing.Any as the type of untyped config nodes",
    },
    "transformers": {
        **_family("training_args.TrainingArguments training_args.OptimizerNames "
                  "training_args_seq2seq.Seq2SeqTrainingArguments trainer_utils.IntervalStrategy "
                  "trainer_utils.SaveStrategy trainer_utils.HubStrategy "
                  "trainer_utils.SchedulerType trainer_utils.EvaluationStrategy "
                  "trainer_utils.FSDPOption debug_utils.DebugOption "
                  "trainer_pt_utils.AcceleratorConfig training_args.ParallelMode",
                  "transformers' TrainingArguments (training_args.bin) and its enums",
                  "transformers."),
        "accelerate.state.PartialState": "the device state TrainingArguments caches",
        "accelerate.utils.dataclasses.DistributedType": "an accelerate enum in that state",
    },
    "numpy-rng": {
        **_family("__randomstate_ctor __generator_ctor __bit_generator_ctor",
                  "numpy's RNG unpickling constructor (numpy/random/_pickle.py): builds a "
                  "generator from a bit generator name", "numpy.random._pickle."),
        "numpy.random.__RandomState_ctor": "numpy < 1.17's RandomState constructor",
        **_family("_pcg64.PCG64 _pcg64.PCG64DXSM _mt19937.MT19937 _philox.Philox _sfc64.SFC64 "
                  "bit_generator.SeedSequence bit_generator.__pyx_unpickle_SeedSequence "
                  "mtrand.RandomState _generator.Generator",
                  "a numpy bit generator or its seed sequence (RNG state)", "numpy.random."),
    },
}

_PROFILE_OF = {name: profile for profile, names in PROFILES.items() for name in names}
# Whole pickled models (torch.save(model)): torch's own layer classes, rebuilt by
# Module.__setstate__ from their attribute dict. The model's own classes stay unknown imports.
PROFILE_PREFIXES: dict[str, tuple[str, str]] = {
    "torch.nn.modules.": ("torch-modules", "a torch.nn layer class of a pickled whole model: "
                          "unpickling it runs only torch's Module.__setstate__"),
}

# Known code-execution gadgets: a module (and its submodules) or an exact qualname -> what it
# does. Only grades severity; anything off the allowlist is unsafe whether listed here or not.
GADGETS: dict[str, str] = {
    **_family("os posix nt subprocess pty commands popen2",
              "runs shell commands and touches files"),
    **_family("eval exec compile execfile __import__ open input breakpoint apply getattr "
              "setattr delattr globals locals vars help",
              "evaluates code, imports modules or reaches any attribute", "builtins."),
    **_family("runpy timeit cProfile profile pdb bdb trace code codeop doctest idlelib "
              "lib2to3 numpy.testing numpy.f2py numpy.distutils",
              "compiles and runs a string of Python (e.g. runpy._run_code, timeit.timeit, "
              "numpy.testing runstring, doctest.debug_script)"),
    **_family("multiprocessing concurrent threading _thread asyncio _posixsubprocess",
              "starts processes or threads that run a callable"),
    **_family("ctypes _ctypes cffi numpy.ctypeslib", "loads native libraries, calls raw C"),
    **_family("logging.config logging.handlers", "resolves and calls factories by name, "
              "or opens sockets and files (logging.config.dictConfig '()' keys)"),
    **_family("importlib pkgutil pydoc zipimport imp site sys types.FunctionType "
              "types.CodeType types.MethodType",
              "imports modules or resolves names at run time (pkgutil.resolve_name, "
              "pydoc.locate, importlib.import_module)"),
    **_family("attrgetter methodcaller itemgetter", "reaches attributes or calls methods of "
              "objects built at run time (GHSA-955r-x9j8-7rhh)", "operator."),
    **_family("attrgetter methodcaller itemgetter", "the C twin of operator "
              "(GHSA-46h3-79wf-xr6c)", "_operator."),
    **_family("partial partialmethod reduce", "binds or applies any callable", "functools."),
    **_family("pickle _pickle cPickle dill cloudpickle joblib marshal shelve copyreg "
              "torch.storage._load_from_bytes torch.serialization torch.load torch.jit",
              "unpickles or loads another payload"),
    **_family("webbrowser shutil socket ssl requests urllib urllib3 http httplib httpx aiohttp "
              "ftplib smtplib imaplib poplib telnetlib nntplib xmlrpc io.open io.FileIO "
              "io.open_code _io.open _io.FileIO tempfile",
              "opens network connections, or reads, writes and deletes files"),
    **_family("pip ensurepip venv setuptools distutils _osx_support _aix_support _pyrepl",
              "installs packages or runs commands (CVE-2025-1716 pip.main, CVE-2026-56315)"),
    **_family("_get_command_stdout _popen _ifconfig_getnode _ip_getnode _arp_getnode "
              "_netstat_getnode _lanscan_getnode", "runs a shell command (CVE-2026-56315)",
              "uuid."),
    **_family("torch.hub torch.utils.collect_env torch.utils.cpp_extension torch._inductor "
              "torch._dynamo torch.fx torch.utils.bottleneck torch.utils._config_module "
              "torch.utils.data.datapipes torch.ops torch.classes torch._C",
              "downloads and runs code, compiles C++, or runs shell commands "
              "(torch.hub.load, torch.utils.collect_env.run)"),
}

# Calls whose bytes arguments are themselves pickles a loader would run: scanned as nested.
LOADERS = frozenset(
    ["pickle.loads", "pickle._loads", "_pickle.loads", "pickle.load", "_pickle.load", "dill.loads", "cloudpickle.loads", "joblib.load", "torch.load", "torch.serialization.load", "torch.storage._load_from_bytes", "torch.serialization._load_from_bytes", "numpy.loads", "numpy.load", "marshal.loads"])

# Calls that turn their bytes/str argument into the bytes a loader then reads.
DECODERS = frozenset(
    ["base64.b64decode", "base64.standard_b64decode", "base64.urlsafe_b64decode", "base64.b32decode", "base64.b16decode", "base64.b85decode", "base64.a85decode", "base64.decodebytes", "binascii.a2b_base64", "binascii.a2b_hex", "binascii.unhexlify", "zlib.decompress", "bz2.decompress", "lzma.decompress", "gzip.decompress", "codecs.decode", "_codecs.decode", "io.BytesIO", "_io.BytesIO", "builtins.bytes", "_codecs.encode"])


@dataclass(frozen=True)
class Judgement:
    kind: str  # allow, profile, gadget, unknown
    why: str
    profile: str | None = None


def gadget(module: str, name: str) -> str | None:
    """Why ``module.name`` is a known gadget: the exact name, a module above it, or, for a
    dotted name, the attribute path it walks (``torch.serialization`` + ``os.system``)."""
    why = GADGETS.get(f"{module}.{name}")
    if why is not None:
        return why
    attrs = name.split(".")
    for i in range(len(attrs) - 1, 0, -1):
        path = ".".join(attrs[:i])
        why = GADGETS.get(path) or GADGETS.get(f"{module}.{path}") or \
            GADGETS.get(f"builtins.{attrs[i]}")
        if why is not None:
            return why
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        why = GADGETS.get(".".join(parts[:i]))
        if why is not None:
            return why
    return None


# -- the user's own allowlist (scan --allow NAME, --policy FILE) --------------------------------

_NAME = re.compile(r"^[\w-]+(\.[\w-]+)*\.([\w-]+(\.[\w-]+)*|\*)$")


@dataclass(frozen=True)
class UserAllow:
    """Globals a user vouches for: ``module.qualname`` exactly, or ``module.*`` (every global of
    that module and of its submodules), each with the reason given. It turns *needs-code*
    findings into allowed names; it never allows a known gadget, a dunder attribute or a name
    built at run time (those stay findings whatever the policy says)."""

    exact: dict[str, str] = field(default_factory=dict)
    prefixes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, entries: list[tuple[str, str]]) -> UserAllow:
        exact: dict[str, str] = {}
        prefixes: dict[str, str] = {}
        for name, reason in entries:
            if not _NAME.match(name):
                raise UsageError(f"--allow {name!r}: expected module.qualname or module.*",
                                 hint="e.g. --allow __main__.Net or --allow mylib.models.*")
            if name.endswith(".*"):
                prefixes[name[:-1]] = reason
            else:
                exact[name] = reason
        return cls(exact, prefixes)

    def __bool__(self) -> bool:
        return bool(self.exact or self.prefixes)

    def reason(self, qualname: str) -> str | None:
        why = self.exact.get(qualname)
        if why is not None:
            return why
        for prefix, why in self.prefixes.items():
            if qualname.startswith(prefix):
                return why
        return None

    def merged(self, other: UserAllow) -> UserAllow:
        return UserAllow({**self.exact, **other.exact}, {**self.prefixes, **other.prefixes})


def load_policy(path: str) -> UserAllow:
    """A policy file: a JSON or TOML list of ``{name, reason}`` entries, a reason for each.

    JSON: ``[{"name": "mylib.models.*", "reason": "our own model classes"}]`` (or that list
    under ``"allow"``). TOML: ``[[allow]]`` tables with ``name`` and ``reason``."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise UsageError(f"--policy {path}: {exc.strerror or exc}") from None
    doc: object
    try:
        if os.path.splitext(path)[1].lower() == ".toml":
            import tomllib

            doc = tomllib.loads(raw.decode("utf-8"))
        else:
            doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"--policy {path}: not valid {'TOML' if path.endswith('.toml') else 'JSON'}"
                         f": {exc}") from None
    if isinstance(doc, dict):
        doc = doc.get("allow")
    if not isinstance(doc, list):
        raise UsageError(f"--policy {path}: expected a list of {{name, reason}} entries "
                         "(JSON) or [[allow]] tables (TOML)")
    entries: list[tuple[str, str]] = []
    for i, e in enumerate(doc):
        if not (isinstance(e, dict) and isinstance(e.get("name"), str)
                and isinstance(e.get("reason"), str) and e["reason"].strip()):
            raise UsageError(f"--policy {path}: entry {i + 1} needs a name and a reason",
                             hint="policy is data: say why each name is safe to import")
        entries.append((e["name"], e["reason"].strip()))
    return UserAllow.of(entries)


def judge(module: str, name: str, *, torchscript: bool = False,
          profiles: bool = True, allow: UserAllow | None = None) -> Judgement:
    """Where ``module.name`` stands: allowlisted, an ecosystem object, a gadget, or unknown."""
    j = _judge(module, name, torchscript=torchscript, profiles=profiles)
    if allow and j.kind == "unknown" and not any(p.startswith("__") for p in name.split(".")):
        why = allow.reason(f"{module}.{name}")
        if why is not None:
            return Judgement("allow", f"allowed by the user's policy: {why}")
    return j


def _judge(module: str, name: str, *, torchscript: bool, profiles: bool) -> Judgement:
    qualname = f"{module}.{name}"
    why = ALLOWLIST.get(qualname)
    if why is not None:
        return Judgement("allow", why)
    if torchscript:
        why = TORCHSCRIPT_ONLY.get(qualname)
        if why is None and module.split(".")[0] == "__torch__":
            why = TORCHSCRIPT_ONLY["__torch__."]
        if why is not None:
            return Judgement("allow", why)
    profile = _PROFILE_OF.get(qualname)
    if profiles and profile is not None:
        return Judgement("profile", PROFILES[profile][qualname], profile)
    for prefix, (profile, why) in PROFILE_PREFIXES.items():
        # Classes only (CamelCase): the functions there (register_module_forward_hook) install
        # process-wide hooks.
        if profiles and qualname.startswith(prefix) and "." not in name and name[:1].isupper():
            return Judgement("profile", why, profile)
    why = gadget(module, name)
    if why is not None:
        return Judgement("gadget", why)
    return Judgement("unknown", "not on modelport's allowlist: a loader imports it, which runs "
                                "the module's code, and may call it")


def is_plain(qualname: str, *, torchscript: bool = False, profiles: bool = True,
             allow: UserAllow | None = None) -> bool:
    """Whether a value of this class or this global may appear as data (profile arguments)."""
    module, _, name = qualname.rpartition(".")
    return judge(module, name, torchscript=torchscript, profiles=profiles,
                 allow=allow).kind in ("allow", "profile")
