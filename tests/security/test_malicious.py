"""Every attack technique in the corpus is caught: one test per technique, named after it.

Each sample (tests/security/corpus.py) cites its advisory where there is one: picklescan
GHSA-655q-fx9r-782v / CVE-2025-1716 (pip.main), GHSA-769v-p64c-89pr / CVE-2025-1889 and
CVE-2025-10155 (a pickle with another extension), GHSA-7q5r-7gvp-wc82 / CVE-2025-1944 (zip name
mismatch), GHSA-w8jq-xcqf-f792 / CVE-2025-1945 (zip flag bits), CVE-2025-10156 (zip CRC),
CVE-2025-10157 (names through innocent modules), GHSA-955r-x9j8-7rhh and GHSA-46h3-79wf-xr6c
(operator/_operator), GHSA-9gvj-pp9x-gcfr (pickle parsing logic flaws), CVE-2025-32434 (the
legacy formats that bypassed torch.load(weights_only=True)), CVE-2026-56315 (uuid and friends).
The samples are never loaded by anything but modelport; the canary proves no payload ran.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import modelport
from modelport.cli import main
from modelport.errors import ModelportError
from modelport.scan import Severity, scan_file, scan_paths
from modelport.scan.findings import NEEDS_CODE_RULES

from .conftest import load_corpus

SAMPLES = load_corpus().SAMPLES


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_technique_is_unsafe(sample, malicious: dict[str, Path], canary: Path) -> None:
    if sample.name not in malicious:
        pytest.skip(f"building this sample needs {sample.needs}")
    report = scan_file(malicious[sample.name])
    # A global on no list at all is "needs-code" (no known gadget, but loading it imports
    # code modelport cannot vouch for); every other technique is a malicious indicator.
    expected = "needs-code" if sample.rule in NEEDS_CODE_RULES else "unsafe"
    assert report.verdict == expected, (sample.technique, report.to_json())
    rules = {f.rule for f in report.unsafe_findings}
    assert sample.rule in rules, (sample.technique, sample.advisory, report.to_json())
    assert main(["scan", str(malicious[sample.name])]) == 1
    assert not canary.exists()


def _findings(path: Path, rule: str) -> list:
    return [f for f in scan_file(path).findings if f.rule == rule]


def test_gadgets_are_critical_and_located(malicious: dict[str, Path]) -> None:
    [f] = _findings(malicious["reduce_os_system.pkl"], "gadget-import")
    assert (f.severity, f.subject, f.offset) == (Severity.CRITICAL, "os.system", 9)
    assert f.why and "gadget" in f.message


def test_fail_closed_unknown_import_is_high_when_called(malicious: dict[str, Path]) -> None:
    [f] = _findings(malicious["unknown_import.pkl"], "unknown-import")
    assert f.severity == Severity.HIGH and f.subject == "mylib.setup_helpers.post_install"


def test_nested_payloads_are_scanned_with_their_path(malicious: dict[str, Path]) -> None:
    for name, via in (("nested_pickle.pkl", "pickle.loads"),
                      ("nested_base64.pkl", "pickle.loads"),
                      ("nested_load_from_bytes.pkl", "torch.storage._load_from_bytes"),
                      ("nested_torch_load.pkl", "torch.load")):
        inner = [f for f in _findings(malicious[name], "gadget-import")
                 if f.subject == "os.system"]
        assert any(f"> {via}@" in (f.member or "") for f in inner), name


def test_nesting_is_bounded(tmp_path: Path) -> None:
    P = load_corpus().P
    payload = P.pickle(P.call("os", "system", "true"))
    for _ in range(20):
        payload = P.pickle(P.call("pickle", "loads", payload))
    (tmp_path / "deep.pkl").write_bytes(payload)
    report = scan_file(tmp_path / "deep.pkl")
    assert report.verdict == "unsafe"
    assert any(f.rule == "limit" for f in report.findings)


def test_both_duplicate_members_are_scanned(malicious: dict[str, Path]) -> None:
    report = scan_file(malicious["zip_duplicate.pt"])
    scanned = [s for s in report.scanned if s.startswith("archive/data.pkl")]
    assert len(scanned) == 2
    assert any(f.rule == "zip-duplicate" for f in report.findings)


def test_zip_tricks_still_scan_through(malicious: dict[str, Path]) -> None:
    for name in ("zip_name_mismatch.pt", "zip_flag_bits.pt", "zip_bad_crc.pt", "polyglot.pt",
                 "zip_payload_in_storage.pt", "zip_compressed_storage.pt"):
        assert _findings(malicious[name], "gadget-import"), name


def test_broken_pickle_reports_the_error_and_the_finding(malicious: dict[str, Path],
                                                         capsys: pytest.CaptureFixture) -> None:
    report = scan_file(malicious["broken_after_payload.pkl"])
    assert report.errors and report.verdict == "unsafe"
    assert main(["scan", str(malicious["broken_after_payload.pkl"])]) == 1
    out = capsys.readouterr().out
    assert "ERROR" in out and "broken-after-code" in out


def test_whole_corpus_in_one_run(malicious: dict[str, Path], capsys: pytest.CaptureFixture,
                                 canary: Path) -> None:
    folder = next(iter(malicious.values())).parent
    assert main(["scan", str(folder)]) == 1
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln[:1].isupper()]
    verdicts = [ln.split()[0] for ln in lines]
    assert verdicts and set(verdicts) == {"UNSAFE", "NEEDS-CODE"}, lines
    assert verdicts.count("NEEDS-CODE") == sum(s.rule in NEEDS_CODE_RULES for s in SAMPLES
                                               if s.name in malicious)
    assert len(verdicts) == len(malicious)
    assert not canary.exists()


def test_json_and_sarif(malicious: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    path = str(malicious["torch_zip.pt"])
    assert main(["scan", "--json", path]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "unsafe"
    [f] = [f for f in doc["files"][0]["findings"] if f["rule"] == "gadget-import"]
    assert f["member"] == "archive/data.pkl" and f["severity"] == "CRITICAL"
    assert main(["scan", "--sarif", path]) == 1
    sarif = json.loads(capsys.readouterr().out)
    assert sarif["version"] == "2.1.0"
    result = next(r for r in sarif["runs"][0]["results"] if r["ruleId"] == "gadget-import")
    assert result["level"] == "error"
    loc = result["locations"][0]
    assert loc["physicalLocation"]["region"]["byteOffset"] == f["offset"]
    assert loc["logicalLocations"][0]["name"] == "archive/data.pkl"
    assert {r["id"] for r in sarif["runs"][0]["tool"]["driver"]["rules"]} >= {"gadget-import"}


def test_inspect_shows_the_verdict(malicious: dict[str, Path],
                                   capsys: pytest.CaptureFixture) -> None:
    assert main(["inspect", "--json", str(malicious["torch_zip.pt"])]) == 0
    assert json.loads(capsys.readouterr().out)["safety"]["verdict"] == "unsafe"


def test_exit_codes(malicious: dict[str, Path], tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(malicious["torch_zip.pt"].read_bytes()[:-30])  # no central directory
    assert scan_file(truncated).verdict == "error"
    assert main(["scan", str(truncated)]) == 2
    assert main(["scan", str(tmp_path / "missing.pt")]) == 2
    # An error never hides a finding: unsafe + unreadable in one run exits 1.
    assert main(["scan", str(truncated), str(malicious["torch_zip.pt"])]) == 1


def test_strict_turns_profiles_off(malicious: dict[str, Path], tmp_path: Path) -> None:
    P = load_corpus().P
    ns = P.glob("argparse", "Namespace") + P.EMPTY_TUPLE + P.NEWOBJ + P.arg({"lr": 1}) + P.BUILD
    path = tmp_path / "hparams.pkl"
    path.write_bytes(P.pickle(ns))
    assert scan_file(path).verdict == "clean"
    strict = scan_file(path, strict=True)
    assert strict.verdict == "needs-code" and strict.needs_code == ["argparse.Namespace"]
    assert main(["scan", "--strict", str(path)]) == 1


def test_canary_never_exists_after_scan_inspect_open(malicious: dict[str, Path],
                                                     canary: Path) -> None:
    """The canary test: every sample goes through every entry point that reads it."""
    scan_paths(malicious.values())
    scan_paths(malicious.values(), strict=True)
    for path in malicious.values():
        main(["inspect", str(path)])
        main(["inspect", "--json", str(path)])
        try:
            modelport.open(path)
        except ModelportError:
            pass  # refusing is fine; running is not
        assert not canary.exists(), path
    assert not os.path.exists(canary)


@pytest.mark.parametrize("name", ["model.pth.tar", "yolo.weights", "no_extension",
                                  "config.json", "model.safetensors"])
def test_names_do_not_matter(name: str, malicious: dict[str, Path], tmp_path: Path) -> None:
    """Content decides (CVE-2025-1889, CVE-2025-10155): any name gets the same scrutiny."""
    for sample in ("torch_zip.pt", "legacy_tree.pt", "reduce_os_system.pkl"):
        path = tmp_path / name
        path.write_bytes(malicious[sample].read_bytes())
        assert scan_file(path).verdict == "unsafe", (name, sample)


def _onnx_with_external(tmp_path: Path, location: str) -> Path:
    pytest.importorskip("onnx")
    model = tmp_path / "model" / "model.onnx"
    model.parent.mkdir()
    model.write_bytes(load_corpus()._onnx_model(location))
    return model


def test_onnx_external_data_through_a_link(tmp_path: Path) -> None:
    model = _onnx_with_external(tmp_path, "weights.bin")
    (tmp_path / "model" / "real.bin").write_bytes(b"\x00" * 4)
    os.symlink("real.bin", tmp_path / "model" / "weights.bin")
    report = scan_file(model)
    assert report.verdict == "unsafe"
    assert any(f.rule == "onnx-external-link" for f in report.unsafe_findings)


def test_onnx_external_link_out_of_the_folder(tmp_path: Path) -> None:
    model = _onnx_with_external(tmp_path, "weights.bin")
    (tmp_path / "secret").write_bytes(b"\x00" * 4)
    os.symlink(tmp_path / "secret", tmp_path / "model" / "weights.bin")
    report = scan_file(model)
    assert any(f.rule == "onnx-external-path" for f in report.unsafe_findings)


def test_onnx_external_data_in_the_folder_is_clean(tmp_path: Path) -> None:
    model = _onnx_with_external(tmp_path, "weights.bin")
    (tmp_path / "model" / "weights.bin").write_bytes(b"\x00" * 4)
    assert scan_file(model).verdict == "clean"
