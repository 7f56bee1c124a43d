"""The policy tables: the allowlist covers what torch writes and names only real objects; the
denylist grades the gadgets of the corpus as CRITICAL; profiles are not the allowlist."""

from __future__ import annotations

import importlib
import warnings

import pytest

from modelport.pickle import BUILDERS
from modelport.scan import policy


def _resolve(qualname: str) -> object:
    """Import ``module.attr.attr`` the way pickle's find_class does (test-only, trusted names)."""
    parts = qualname.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # numpy.core is a deprecated alias in numpy 2
                obj: object = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        return obj
    raise ImportError(qualname)


def test_torch_weights_only_allowlist_is_covered() -> None:
    """Everything torch.load(weights_only=True) accepts, modelport's allowlist accepts too."""
    pytest.importorskip("torch")
    from torch._weights_only_unpickler import _get_allowed_globals

    missing = sorted(set(_get_allowed_globals()) - set(policy.ALLOWLIST))
    assert not missing


@pytest.mark.parametrize("prefix", ["torch", "numpy", "collections", "builtins", "_codecs",
                                    "copyreg", "pathlib", "datetime", "uuid", "decimal",
                                    "fractions"])
def test_allowlist_names_real_objects(prefix: str) -> None:
    pytest.importorskip(prefix)
    names = [q for q in policy.ALLOWLIST if q.split(".")[0] == prefix]
    assert names
    for qualname in names:
        assert _resolve(qualname) is not None, qualname


def test_every_builder_is_allowlisted() -> None:
    # The reader rebuilds these calls as data; a clean scan must mean the reader can read it.
    assert set(BUILDERS) <= set(policy.ALLOWLIST)


@pytest.mark.parametrize("profile,module", [("lightning", "lightning"),
                                            ("transformers", "transformers"),
                                            ("numpy-rng", "numpy"),
                                            ("omegaconf", "omegaconf")])
def test_profiles_name_real_objects(profile: str, module: str) -> None:
    pytest.importorskip(module)
    for qualname in policy.PROFILES[profile]:
        if qualname.startswith(("accelerate.", "lightning_fabric.", "numpy.random.__Random")):
            continue  # other packages / older numpy
        if qualname.startswith("transformers.trainer_utils.EvaluationStrategy"):
            continue  # removed in transformers 5
        assert _resolve(qualname) is not None, qualname


@pytest.mark.parametrize("qualname", [
    "os.system", "posix.system", "nt.system", "subprocess.Popen", "builtins.eval",
    "builtins.exec", "builtins.getattr", "builtins.__import__", "runpy._run_code",
    "timeit.timeit", "cProfile.run", "pty.spawn", "multiprocessing.util.spawnv_passfds",
    "torch.hub.load", "torch.utils.collect_env.run", "uuid._get_command_stdout",
    "numpy.testing._private.utils.runstring", "ctypes.CDLL", "logging.config.dictConfig",
    "code.InteractiveInterpreter.runcode", "doctest.debug_script",
    "idlelib.pyshell.ModifiedInterpreter.runcommand", "pickle.loads", "_pickle.loads",
    "importlib.import_module", "pkgutil.resolve_name", "pydoc.locate",
    "operator.attrgetter", "_operator.methodcaller", "functools.partial", "webbrowser.open",
    "shutil.rmtree", "socket.create_connection", "requests.get", "http.client.HTTPConnection",
    "pip.main", "torch.storage._load_from_bytes", "torch.serialization.os.system",
])
def test_known_gadgets_are_graded_critical(qualname: str) -> None:
    module, name = qualname.split(".", 1)[0], qualname.split(".", 1)[1]
    # Try every split point: find_class receives (module, name) however the pickle cut it.
    cuts = [(".".join(qualname.split(".")[:i]), ".".join(qualname.split(".")[i:]))
            for i in range(1, qualname.count(".") + 1)]
    for module, name in cuts:
        assert policy.judge(module, name).kind == "gadget", (module, name)


def test_unknown_is_neither_allowed_nor_a_gadget() -> None:
    assert policy.judge("mylib.helpers", "Thing").kind == "unknown"
    assert policy.judge("io", "BytesIO").kind == "unknown"


def test_profiles_are_off_in_strict_mode() -> None:
    for names in policy.PROFILES.values():
        for qualname in names:
            module, _, name = qualname.rpartition(".")
            assert policy.judge(module, name).kind == "profile"
            assert policy.judge(module, name, profiles=False).kind != "profile"
            assert qualname not in policy.ALLOWLIST


def test_torchscript_names_only_inside_torchscript() -> None:
    assert policy.judge("__torch__.model", "Net").kind == "unknown"
    assert policy.judge("__torch__.model", "Net", torchscript=True).kind == "allow"
    assert policy.judge("torch.jit._pickle", "build_intlist", torchscript=True).kind == "allow"
    assert policy.judge("torch.jit._pickle", "build_intlist").kind == "gadget"


def test_torch_layer_classes_are_a_profile_but_functions_are_not() -> None:
    assert policy.judge("torch.nn.modules.linear", "Linear").kind == "profile"
    assert policy.judge("torch.nn.modules.module", "register_module_forward_hook").kind \
        == "unknown"
    assert policy.judge("torch.nn.modules.linear", "Linear", profiles=False).kind == "unknown"
