"""TensorFlow readers on broken bytes: every cut and flip of a checkpoint index, a data shard and
a saved_model.pb either reads or raises a one-line ModelportError with a location; the snappy
decoder agrees with the reference implementation (cramjam) and refuses what it cannot read."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

import modelport
from modelport.cli.inspect import render, report
from modelport.containers import snappy
from modelport.containers.crc32c import _pure, crc32c, mask, unmask
from modelport.errors import ModelportError
from modelport.scan import scan_file

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tf"


def exercise(path: Path) -> object:
    """Open, report, render and read every tensor; only a located one-line error may escape.
    The scanner, on the same bytes, never raises and never calls a broken file clean."""
    try:
        ck = modelport.open(path)
        json.dumps(report(ck), default=str)
        render(ck, None)
        for t in ck.tensors():
            modelport.to_numpy(t)
    except ModelportError as exc:
        text = str(exc)
        assert len(text.splitlines()) == 1 and (exc.path or exc.tensor), text
        return exc
    return ck


def _variants(data: bytes, rng: random.Random, n: int) -> list[bytes]:
    out = [data[:cut] for cut in sorted({*range(0, len(data), max(1, len(data) // 40)),
                                         *range(max(0, len(data) - 60), len(data))})]
    for _ in range(n):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(buf))
            buf[i] = rng.choice([0, 0xFF, rng.randrange(256), buf[i] ^ (1 << rng.randrange(8))])
        out.append(bytes(buf))
    return out


@pytest.mark.parametrize("member", ["model.ckpt.index", "model.ckpt.data-00000-of-00001",
                                    "model.ckpt.meta"])
def test_broken_tf1_checkpoint_files(tmp_path: Path, member: str) -> None:
    d = tmp_path / "ck"
    shutil.copytree(FIXTURES / "tf1_saver", d)
    original = (d / member).read_bytes()
    errors = 0
    for data in _variants(original, random.Random(member), 60):
        (d / member).write_bytes(data)
        errors += isinstance(exercise(d / member if member.endswith(".meta")
                                      else d / "model.ckpt"), ModelportError)
    assert errors > 20


def test_broken_saved_model_pb(tmp_path: Path) -> None:
    d = tmp_path / "sm"
    shutil.copytree(FIXTURES / "sm_module", d)
    original = (d / "saved_model.pb").read_bytes()
    errors = 0
    for data in _variants(original, random.Random(7), 60):
        (d / "saved_model.pb").write_bytes(data)
        errors += isinstance(exercise(d), ModelportError)
        verdict = scan_file(d / "saved_model.pb").verdict
        assert verdict in ("clean", "error", "unsafe")
    assert errors > 20


def test_crc32c_matches_the_reference_values() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # RFC 3720 check value
    assert _pure(b"123456789") == 0xE3069283
    data = bytes(range(256)) * 7
    assert _pure(data) == crc32c(data) and crc32c(data[100:], crc32c(data[:100])) == crc32c(data)
    assert unmask(mask(0xDEADBEEF)) == 0xDEADBEEF


def test_snappy_agrees_with_cramjam() -> None:
    cramjam = pytest.importorskip("cramjam")
    rng = random.Random(3)
    samples = [b"", b"a", b"ab" * 1000, bytes(range(256)) * 40,
               bytes(rng.randrange(4) for _ in range(5000)), rng.randbytes(3000),
               b"xyz" + b"\0" * 70000 + b"tail"]
    for raw in samples:
        packed = bytes(cramjam.snappy.compress_raw(raw))
        assert snappy.decompress(packed, 1 << 20) == raw


@pytest.mark.parametrize("bad", [
    b"\x05\x08abc",  # literal runs past the end
    b"\x04\x01\x05",  # copy before the start of the output
    b"\x05\x0cabcd\x09\x04",  # a copy makes the output longer than declared
    b"\xff\xff\xff\xff\x7f",  # declared length over the limit
    b"\x03\x08ab",  # declared 3, got 2
])
def test_snappy_refuses_broken_streams(bad: bytes) -> None:
    with pytest.raises(ModelportError):
        snappy.decompress(bad, 1 << 20)


def test_index_with_snappy_blocks_reads_the_same(tmp_path: Path) -> None:
    """TensorFlow's table reader accepts snappy-compressed blocks; so does modelport. The
    fixture's records are written again as a table whose data block is compressed."""
    pytest.importorskip("cramjam")
    from tfkit import table

    from modelport.containers.sstable import Table

    d = tmp_path / "ck"
    shutil.copytree(FIXTURES / "tf1_saver", d)
    index = d / "model.ckpt.index"
    records = [(r.key, r.value) for r in Table(index.read_bytes()).records()]
    index.write_bytes(table(records, snappy=True))
    ck = modelport.open(d / "model.ckpt")
    assert ck.info["tf_checkpoint"]["compressed_index_blocks"] == 1
    ref = modelport.open(FIXTURES / "tf1_saver" / "model.ckpt")
    assert list(ck.weights) == list(ref.weights)
    for name, t in ck.weights.items():
        assert modelport.to_numpy(t).tobytes() == modelport.to_numpy(ref.weights[name]).tobytes()


def test_one_varint_decoder_with_leveldbs_rules_for_tables_and_protobufs_for_messages() -> None:
    """SSTable blocks and handles use LevelDB's varints (the value must fit: GetVarint32 /
    GetVarint64), protobuf messages protobuf's (ten bytes, bits past 64 dropped): one decoder,
    containers/protobuf.read_varint, reads both."""
    from modelport.containers.protobuf import read_varint
    from modelport.errors import MalformedHeader, Truncated

    five = b"\xff\xff\xff\xff\x0f"  # 2**32 - 1: the largest varint32
    assert read_varint(five, 0, 5, 32) == (2**32 - 1, 5)
    with pytest.raises(MalformedHeader, match="varint32 out of range"):
        read_varint(b"\xff\xff\xff\xff\x1f", 0, 5, 32)  # 2**33 - 1 does not fit
    with pytest.raises(MalformedHeader, match="varint32 too long"):
        read_varint(b"\x80" * 6 + b"\x01", 0, 7, 32)
    ten = b"\xff" * 9 + b"\x7f"  # 70 bits: protobuf keeps the low 64, LevelDB refuses
    assert read_varint(ten, 0, 10) == (2**64 - 1, 10)
    with pytest.raises(MalformedHeader, match="varint64 out of range"):
        read_varint(ten, 0, 10, 64)
    with pytest.raises(Truncated, match="end of its block"):
        read_varint(b"\x80", 0, 1, 64)
