"""The format registry: one decision for detect and the scanner, and recognised formats that
modelport does not analyse yet are never called clean."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import modelport
from modelport.cli import main
from modelport.errors import UnsupportedFormat
from modelport.formats import registry, writer_names
from modelport.scan import scan_file

# Minimal but well-formed heads of formats that carry code or graphs.
RECOGNISED = {
    "gguf": b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 23)
    + b"tokenizer.chat_template" + struct.pack("<IQ", 8, 2) + b"{{x}}"[:2],
    "keras-h5": b"\x89HDF\r\n\x1a\n" + bytes(120),
    "tflite": b"\x1c\x00\x00\x00TFL3" + bytes(64),
    "tf-savedmodel-pb": b"\x08\x01\x12\x80\x01\x0a\x10" + bytes(140),
    "tf-checkpoint": bytes(40) + (0xDB4775248B80FB57).to_bytes(8, "little"),
}


def test_ids_are_unique_and_every_writer_has_a_name() -> None:
    ids = [f.id for f in registry()]
    assert len(ids) == len(set(ids))
    assert {"safetensors", "torch", "npz"} <= set(writer_names())


@pytest.mark.parametrize("fmt", sorted(RECOGNISED))
def test_recognised_but_unanalysed_formats_are_not_clean(tmp_path: Path, fmt: str,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(RECOGNISED[fmt])
    assert modelport.sniff(path) == fmt
    report = scan_file(path)
    if fmt in {f.id for f in registry() if f.scan is None}:
        assert report.format == fmt and report.verdict == "error"
        assert "not" in report.errors[0] and "analys" in report.errors[0]
        assert main(["scan", str(path)]) == 2
        with pytest.raises(UnsupportedFormat):
            modelport.open(path)
    capsys.readouterr()


def test_saved_model_pb_is_not_taken_for_onnx(tmp_path: Path) -> None:
    path = tmp_path / "saved_model.pb"
    path.write_bytes(RECOGNISED["tf-savedmodel-pb"])
    assert modelport.sniff(path) != "onnx"


def test_missing_path_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        modelport.open(tmp_path / "absent.pt")


def test_can_routes_name_only_registered_formats_or_families() -> None:
    """can.ROUTES is keyed by the registry's ids (a family row is the fallback for a format
    without its own): a key the registry does not know would be a second list of formats."""
    from modelport.can import ROUTES

    known = {f.id for f in registry()} | {f.family for f in registry()}
    assert set(ROUTES) <= known, sorted(set(ROUTES) - known)


def test_registering_and_sniffing_import_no_reader(tmp_path: Path) -> None:
    """The registry imports every format's registering module on the first sniff: readers and
    their decoders are imported only when a file of theirs is met (start-up time is part of
    every `inspect` and `scan`). A safetensors file is asked of every format before it."""
    import subprocess
    import sys

    st = tmp_path / "model.safetensors"
    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    st.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    heavy = ["modelport.formats." + m + ".reader" for m in
             ("onnx", "gguf", "numpy", "keras", "tflite", "tf_checkpoint", "tf_savedmodel")]
    heavy += ["modelport.containers." + m for m in ("hdf5", "flatbuffers", "protobuf", "sstable")]
    code = ("import sys\nimport modelport\nfrom modelport import formats\n"
            f"assert modelport.sniff({str(st)!r}) == 'safetensors'\n"
            "assert len(formats.registry()) > 20\n"
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
    # and the readers are there when asked for
    assert modelport.open(st).weights["w"].shape == (1,)
    assert {f.open.split(":")[0] for f in registry() if f.open and "reader" in f.open} >= {
        m for m in heavy if m.startswith("modelport.formats.")}


def test_magic_numbers_kept_by_registrations_match_their_decoders() -> None:
    """Registrations keep the few magic numbers they sniff by, so that sniffing imports no
    decoder; they must be the decoders' own."""
    from modelport.containers import npy, sstable
    from modelport.formats import numpy as np_registration
    from modelport.formats import tf_checkpoint

    assert tf_checkpoint.TABLE_MAGIC == sstable.MAGIC and sstable.FOOTER == 48
    assert np_registration.MAGIC == npy.MAGIC

