"""Verdicts people can act on (issue #7, item 5): malicious indicators are *unsafe*, a global
on no list is *needs-code* (loading imports it; --allow / --policy vouch for it), ``convert``
and ``inspect`` go on for needs-code and say which classes, ``-q`` and ``--json`` serve scripts,
and a Hugging Face cache's blobs are scanned once.

Decision: ``scan`` exits 1 for needs-code (as for unsafe) unless the names are allowed, since a
file that imports code nobody vouched for is not something CI should pass silently; peers call
unknown globals "dangerous" (picklescan) or "suspicious" (modelscan) for the same reason.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import modelport
from modelport.cli import main
from modelport.convert import convert
from modelport.scan import scan_file

from .conftest import load_corpus

C = load_corpus()
P = C.P


def _own_class(module: str = "mylib.models", name: str = "Net") -> bytes:
    # What torch.save(model) writes for a model class: the class, NEWOBJ, BUILD of its state.
    return P.glob(module, name) + P.EMPTY_TUPLE + P.NEWOBJ + P.arg({"training": False}) + P.BUILD


def _model_file(tmp_path: Path, obj: bytes = b"", name: str = "model.pt") -> Path:
    tensor = C._storage_tensor()
    state = P.EMPTY_DICT + P.s("weight") + tensor + b"s"
    data = P.pickle(P.EMPTY_DICT, P.s("state_dict"), state, b"s",
                    P.s("net"), obj or _own_class(), b"s")
    path = tmp_path / name
    path.write_bytes(C.torch_zip(data))
    return path


def test_own_classes_are_needs_code_not_unsafe(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    report = scan_file(_model_file(tmp_path))
    assert report.verdict == "needs-code" and report.needs_code == ["mylib.models.Net"]
    assert not report.malicious
    assert main(["scan", str(tmp_path / "model.pt")]) == 1
    out = capsys.readouterr().out
    assert "NEEDS-CODE" in out and "mylib.models.Net" in out and "--allow" in out


def test_a_gadget_next_to_an_own_class_is_unsafe(tmp_path: Path, canary: Path) -> None:
    path = _model_file(tmp_path, _own_class() + b"0" + C._system(str(canary)).ops)
    report = scan_file(path)
    assert report.verdict == "unsafe" and report.needs_code == ["mylib.models.Net"]
    assert {f.category for f in report.unsafe_findings} == {"malicious", "needs-code"}
    assert not canary.exists()


@pytest.mark.parametrize("allow", [["--allow", "mylib.models.Net"], ["--allow", "mylib.*"],
                                   ["--allow", "mylib.models.*", "--allow", "other.X"]])
def test_allow_vouches_for_names(tmp_path: Path, allow: list[str]) -> None:
    path = _model_file(tmp_path)
    assert main(["scan", str(path), *allow]) == 0


def test_allow_never_allows_gadgets_or_dunders(tmp_path: Path) -> None:
    gadget = tmp_path / "g.pkl"
    gadget.write_bytes(C._wrap(P.call("os", "system", "true")))
    assert main(["scan", str(gadget), "--allow", "os.system", "--allow", "os.*"]) == 1
    dunder = tmp_path / "d.pkl"
    dunder.write_bytes(P.pickle(P.glob("mylib", "__reduce__"), proto=2))
    assert main(["scan", str(dunder), "--allow", "mylib.*"]) == 1
    assert main(["scan", str(gadget), "--allow", "not a name"]) == 2


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_policy_file_with_a_reason_per_entry(tmp_path: Path, suffix: str) -> None:
    path = _model_file(tmp_path)
    policy = tmp_path / f"policy{suffix}"
    if suffix == ".json":
        policy.write_text(json.dumps([{"name": "mylib.models.*", "reason": "our classes"}]))
    else:
        policy.write_text('[[allow]]\nname = "mylib.models.Net"\nreason = "our model"\n')
    assert main(["scan", str(path), "--policy", str(policy)]) == 0
    policy.write_text('[{"name": "mylib.models.*"}]' if suffix == ".json"
                      else '[[allow]]\nname = "mylib.models.Net"\n')
    assert main(["scan", str(path), "--policy", str(policy)]) == 2  # no reason: refused


def test_convert_and_inspect_go_on_for_needs_code(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    path = _model_file(tmp_path)
    result = convert(path, tmp_path / "out.safetensors")
    assert any("mylib.models.Net" in n for n in result.notes)
    assert modelport.open(tmp_path / "out.safetensors").weights
    assert main(["inspect", "--json", str(path)]) == 0
    safety = json.loads(capsys.readouterr().out)["safety"]
    assert safety["verdict"] == "needs-code" and safety["needs_code"] == ["mylib.models.Net"]


def test_quiet_prints_only_files_that_are_not_clean(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    clean = tmp_path / "clean.pt"
    clean.write_bytes(C.torch_zip(C.benign_state()))
    own = _model_file(tmp_path)
    assert main(["scan", "-q", str(clean), str(own)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in out if ln[:1].isupper()] == ["NEEDS-CODE"]
    assert "1 clean, 1 needs-code, 0 unsafe, 0 error(s)" in out[-1]


def test_json_has_counts_and_the_version(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    clean = tmp_path / "clean.pt"
    clean.write_bytes(C.torch_zip(C.benign_state()))
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(C._wrap(P.call("os", "system", "true")))
    assert main(["scan", "--json", str(clean), str(_model_file(tmp_path)), str(evil),
                 str(tmp_path / "missing")]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["modelport"] == modelport.__version__ and doc["verdict"] == "unsafe"
    assert doc["counts"] == {"clean": 1, "needs-code": 1, "unsafe": 1, "error": 1}
    categories = {f["category"] for f in doc["files"][2]["findings"] if f["severity"] != "INFO"}
    assert categories == {"malicious"}


def test_hugging_face_cache_blobs_are_scanned_once(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    repo = tmp_path / "hub" / "models--me--net"
    blob = repo / "blobs" / ("ab" * 32)
    snap = repo / "snapshots" / ("c" * 40)
    blob.parent.mkdir(parents=True)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("c" * 40)
    blob.write_bytes(C.torch_zip(C.benign_state()))
    os.symlink(os.path.relpath(blob, snap), snap / "pytorch_model.bin")
    assert main(["scan", "--json", str(tmp_path / "hub")]) == 0
    files = [Path(f["path"]) for f in json.loads(capsys.readouterr().out)["files"]]
    scanned = [f for f in files if f.name in ("pytorch_model.bin", blob.name)]
    assert [f.name for f in scanned] == ["pytorch_model.bin"]  # once, by its snapshot name


def test_own_class_in_hyper_parameters_is_needs_code(tmp_path: Path) -> None:
    # save_hyperparameters(cfg=MyConfig(...)): the profile (argparse.Namespace) holds a user
    # class; that is the class's needs-code, not a profile abused (os.system there is).
    ns = P.glob("argparse", "Namespace") + P.EMPTY_TUPLE + P.NEWOBJ + P.MARK + P.s("lr") + \
        P.i(1) + P.s("cfg") + _own_class("mylib.config", "Config") + P.DICT + P.BUILD
    path = _model_file(tmp_path, ns, name="hparams.ckpt")
    report = scan_file(path)
    assert report.verdict == "needs-code" and report.needs_code == ["mylib.config.Config"]
