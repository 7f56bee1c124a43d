"""Containers in full: every stream of a compressed file, every header variant loaders accept,
tar by checksum (v7 too) with its escaping names and links.

Each malicious file is built here from bytes; the loader's own reader (gzip, bz2, lzma, tarfile,
joblib's read_zfile) is used only as the oracle that *reads* the container (nothing is
unpickled) to prove the payload is where a loader would find it.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import pickletools
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from modelport.containers import compress
from modelport.containers import tar as tarfmt
from modelport.scan import scan_file

from .corpus import P


def _payload(canary: Path) -> bytes:
    return P.pickle(P.glob("os", "system") + P.MARK + P.s(f"touch {canary}") + P.TUPLE +
                    P.REDUCE, proto=2)


def _globals(data: bytes) -> list[str]:
    """What the oracle sees: GLOBAL operands in the decompressed bytes (pickletools only
    decodes opcodes; nothing is imported)."""
    return [str(arg) for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"]


def _rules(report) -> set[str]:  # noqa: ANN001
    return {f.rule for f in report.findings}


def _split(data: bytes) -> tuple[bytes, bytes]:
    # The global is in the second half: only a reader of every stream sees it.
    return data[:2], data[2:]


def _lz4(data: bytes) -> bytes:
    lz4f = pytest.importorskip("lz4.frame")
    return lz4f.compress(data)


def _zstd(data: bytes) -> bytes:
    zstandard = pytest.importorskip("zstandard")
    return zstandard.ZstdCompressor().compress(data)


# kind -> (compress one stream, read every stream as the loader does)
STREAMS = {
    "gzip": (gzip.compress, gzip.decompress),
    "bz2": (bz2.compress, bz2.decompress),
    "xz": (lzma.compress, lzma.decompress),
    "lzma": (lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE),
             lambda d: lzma.decompress(d, format=lzma.FORMAT_ALONE)),
    "lz4": (_lz4, lambda d: pytest.importorskip("lz4.frame").open(io.BytesIO(d)).read()),
    "zstd": (_zstd, lambda d: b"".join(
        pytest.importorskip("zstandard").ZstdDecompressor().read_to_iter(io.BytesIO(d)))),
}


@pytest.mark.parametrize("kind", sorted(STREAMS))
def test_every_stream_of_a_multi_stream_file(kind: str, tmp_path: Path) -> None:
    pack, oracle = STREAMS[kind]
    canary = tmp_path / "CANARY"
    first, second = _split(_payload(canary))
    blob = pack(first) + pack(second)
    if kind == "zstd":
        import zstandard

        # zstandard's one-shot reader stops after a frame; its stream reader reads them all
        blob_read = zstandard.ZstdDecompressor().stream_reader(
            io.BytesIO(blob), read_across_frames=True).read()
    else:
        blob_read = oracle(blob)
    assert _globals(blob_read) == ["os system"]  # the loader sees the whole pickle
    assert _globals(first + b".") == []  # the first stream alone holds no global
    assert compress.kind_of(blob) == kind
    out = compress.decompress(blob, kind, 1 << 20)
    assert out.data == first + second and out.streams >= (1 if kind == "zstd" else 2)
    path = tmp_path / f"model.{kind}"
    path.write_bytes(blob)
    report = scan_file(path)
    assert report.verdict == "unsafe" and "gadget-import" in _rules(report)
    assert not canary.exists()


def test_gzip_members_after_nul_padding(tmp_path: Path) -> None:
    first, second = _split(_payload(tmp_path / "CANARY"))
    blob = gzip.compress(first) + b"\x00" * 100 + gzip.compress(second)
    assert gzip.decompress(blob) == first + second  # gzip skips the padding
    path = tmp_path / "padded.gz"
    path.write_bytes(blob)
    assert scan_file(path).verdict == "unsafe"


def test_garbage_after_the_last_stream_is_reported_not_hidden(tmp_path: Path) -> None:
    blob = gzip.compress(pickle_of_plain_data()) + b"garbage!"
    path = tmp_path / "trailing.gz"
    path.write_bytes(blob)
    report = scan_file(path)
    assert "compressed-trailing" in _rules(report)
    assert report.verdict == "clean"  # LOW: no loader reads it


def pickle_of_plain_data() -> bytes:
    return P.pickle(P.EMPTY_DICT + P.s("epoch") + P.i(3) + b"s", proto=2)


@pytest.mark.parametrize("props", [
    {"lc": 0, "lp": 0, "pb": 0, "dict_size": 4096},
    {"lc": 4, "lp": 0, "pb": 2, "dict_size": 1 << 20},
    {"lc": 3, "lp": 1, "pb": 1, "dict_size": 3 << 19},
])
def test_lzma_alone_with_any_properties(props: dict[str, int], tmp_path: Path) -> None:
    payload = _payload(tmp_path / "CANARY")
    blob = lzma.compress(payload, format=lzma.FORMAT_ALONE,
                         filters=[{"id": lzma.FILTER_LZMA1, **props}])
    assert not blob.startswith(b"\x5d\x00\x00")  # not the header joblib writes
    assert lzma.decompress(blob, format=lzma.FORMAT_ALONE) == payload
    assert compress.kind_of(blob) == "lzma"
    path = tmp_path / "model.lzma"
    path.write_bytes(blob)
    assert scan_file(path).verdict == "unsafe"


def test_lzma_alone_with_an_odd_dictionary_size(tmp_path: Path) -> None:
    # FORMAT_ALONE takes any dictionary size; lzma.open (FORMAT_AUTO) only 2^n or 2^n+2^(n-1).
    payload = _payload(tmp_path / "CANARY")
    blob = bytearray(lzma.compress(payload, format=lzma.FORMAT_ALONE))
    blob[1:5] = struct.pack("<I", 1_000_001)
    assert lzma.decompress(bytes(blob), format=lzma.FORMAT_ALONE) == payload
    path = tmp_path / "odd.lzma"
    path.write_bytes(bytes(blob))
    assert scan_file(path).verdict == "unsafe"


@pytest.mark.parametrize("wbits", [9, 12, 15])
def test_raw_zlib_of_any_window(wbits: int, tmp_path: Path) -> None:
    payload = _payload(tmp_path / "CANARY")
    c = zlib.compressobj(wbits=wbits)
    blob = c.compress(payload) + c.flush()
    assert zlib.decompress(blob) == payload
    assert compress.kind_of(blob) == "zlib"
    path = tmp_path / "model.z"
    path.write_bytes(blob)
    assert scan_file(path).verdict == "unsafe"


@pytest.mark.parametrize("space", [False, True])
def test_joblib_zf_files(space: bool, tmp_path: Path) -> None:
    """joblib < 0.10 wrote 'ZF' + hex length padded to 19 chars (+ a space before 0.8.4)."""
    payload = _payload(tmp_path / "CANARY")
    blob = b"ZF" + hex(len(payload)).encode().ljust(19) + (b" " if space else b"") + \
        zlib.compress(payload)
    compat = pytest.importorskip("joblib.numpy_pickle_compat")
    assert compat.read_zfile(io.BytesIO(blob)) == payload  # joblib's reader: no unpickling
    assert compress.kind_of(blob) == "joblib-zf"
    path = tmp_path / "old.pkl"
    path.write_bytes(blob)
    report = scan_file(path)
    assert report.verdict == "unsafe" and report.format == "compressed-joblib-zf"


def test_zstd_without_a_codec_is_never_clean(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    blob = _zstd(pickle_of_plain_data())
    path = tmp_path / "model.zst"
    path.write_bytes(blob)
    assert scan_file(path).verdict == "clean"
    monkeypatch.setattr(compress, "_stdlib_zstd", lambda: None)
    monkeypatch.setitem(__import__("sys").modules, "zstandard", None)  # not installed
    report = scan_file(path)
    assert report.verdict == "error" and "zstandard" in report.reason


def test_decompression_is_bounded(tmp_path: Path) -> None:
    blob = bz2.compress(b"\x00" * (8 << 20)) * 2
    out = compress.decompress(blob, "bz2", 1 << 20)
    assert out.over and len(out.data) == 1 << 20
    path = tmp_path / "bomb.bz2"
    path.write_bytes(blob)
    assert "bomb" in _rules(scan_file(path))


def test_weights_are_not_taken_for_streams(tmp_path: Path) -> None:
    """Raw float shards: no magic, and the no-magic kinds are confirmed by a trial."""
    rng = np.random.default_rng(0)
    heads = [rng.standard_normal(1024).astype(dt).tobytes() for dt in ("f4", "f2", "f8")
             for _ in range(50)]
    heads += [bytes(1024), np.arange(1024, dtype="i8").tobytes()]
    assert [h[:8] for h in heads if compress.kind_of(h)] == []
    path = tmp_path / "shard.bin"
    path.write_bytes(b"".join(heads))
    assert scan_file(path).verdict == "clean"


# -- tar ------------------------------------------------------------------------------------


def _v7(members: list[tuple[str, bytes]]) -> bytes:
    """A version 7 tar (tarfile writes ustar/GNU/pax only): name, mode, ids, size, mtime,
    checksum, type '0', no magic."""
    out = b""
    for name, data in members:
        head = bytearray(512)
        head[0:100] = name.encode("latin1").ljust(100, b"\0")
        for at, width, value in ((100, 8, 0o644), (108, 8, 0), (116, 8, 0),
                                 (124, 12, len(data)), (136, 12, 0)):
            head[at:at + width] = b"%0*o\0" % (width - 1, value)
        head[156:157] = b"0"
        head[148:156] = b" " * 8
        head[148:156] = b"%06o\0 " % sum(head)
        out += bytes(head) + data + bytes(-len(data) % 512)
    return out + bytes(1024)


def _tar(members: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tar.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tar.addfile(info, io.BytesIO(m[1]))
    return buf.getvalue()


def test_v7_tar_has_no_magic_and_is_scanned(tmp_path: Path) -> None:
    blob = _v7([("sys_info", pickle_of_plain_data()), ("pickle", _payload(tmp_path / "C"))])
    assert b"ustar" not in blob[:512]
    assert [m.name for m in tarfile.open(fileobj=io.BytesIO(blob))] == ["sys_info", "pickle"]
    assert tarfmt.is_tar(blob)
    path = tmp_path / "legacy.tar"
    path.write_bytes(blob)
    report = scan_file(path)
    assert report.verdict == "unsafe" and report.format == "tar"


def test_signed_checksum_headers(tmp_path: Path) -> None:
    """Old tars summed header bytes as signed chars: tarfile accepts both sums."""
    blob = bytearray(_v7([("pickle\xe9", _payload(tmp_path / "C"))]))
    signed = 256 + sum(struct.unpack_from("148b8x356b", blob))
    assert signed != 256 + sum(struct.unpack_from("148B8x356B", blob))
    blob[148:156] = b"%06o\x00 " % signed
    tarfile.TarInfo.frombuf(bytes(blob[:512]), "utf-8", "surrogateescape")  # tarfile takes it
    assert tarfmt.is_tar(bytes(blob))
    path = tmp_path / "signed.tar"
    path.write_bytes(bytes(blob))
    assert scan_file(path).verdict == "unsafe"


def test_every_member_by_content_even_after_zero_blocks(tmp_path: Path) -> None:
    payload = _payload(tmp_path / "C")
    hidden = _tar([("weights.bin", payload)])
    blob = _tar([("README", b"hello")]) + hidden  # tar -i / ignore_zeros reads both archives
    path = tmp_path / "two.tar"
    path.write_bytes(blob)
    assert scan_file(path).verdict == "unsafe"


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize("member, rule", [
    (("../../.bashrc", b"echo hi"), "tar-path"),
    (("/etc/cron.d/job", b"* * * * * x"), "tar-path"),
    (("C:\\Windows\\x.dll", b"MZ"), "tar-path"),
    (("a\\..\\..\\b", b"x"), "tar-path"),
    (_link("pickle", "/etc/passwd", tarfile.SYMTYPE), "tar-link"),
    (_link("data/x", "../../../home/u/.ssh/id_rsa", tarfile.SYMTYPE), "tar-link"),
    (_link("storages", "/root/secret", tarfile.LNKTYPE), "tar-link"),
])
def test_escaping_names_and_links_are_findings(member, rule: str, tmp_path: Path) -> None:  # noqa: ANN001
    path = tmp_path / "escape.tar"
    path.write_bytes(_tar([("README", b"hello"), member]))
    report = scan_file(path)
    assert report.verdict == "unsafe" and rule in _rules(report), report.to_json()


def test_plain_tars_are_clean(tmp_path: Path) -> None:
    blob = _tar([("model/config.json", b"{}"), ("model/weights.bin", bytes(4096)),
                 _link("model/latest", "weights.bin", tarfile.SYMTYPE),
                 ("model/state.pkl", pickle_of_plain_data())])
    path = tmp_path / "model.tar.gz"
    path.write_bytes(gzip.compress(blob))
    report = scan_file(path)
    assert report.verdict == "clean", report.to_json()
    assert "tar-link" in _rules(report)  # noted (LOW): the link stays inside the archive


def test_tar_inside_a_compressed_stream(tmp_path: Path) -> None:
    blob = _v7([("pickle", _payload(tmp_path / "C"))])
    for pack in (gzip.compress, bz2.compress, lzma.compress):
        path = tmp_path / "t.tar.x"
        path.write_bytes(pack(blob))
        assert scan_file(path).verdict == "unsafe"
    assert not os.path.exists(tmp_path / "C")


# -- 7z ---------------------------------------------------------------------------------------


def _7z(members: dict[str, bytes], path: Path) -> Path:
    py7zr = pytest.importorskip("py7zr")
    with py7zr.SevenZipFile(path, "w") as z:
        z.set_encoded_header_mode(False)  # names in plain UTF-16 (the escape test edits them)
        for name, data in members.items():
            z.writestr(data, name)
    return path


def test_7z_members_are_scanned(tmp_path: Path) -> None:
    canary = tmp_path / "CANARY"
    path = _7z({"config.json": b"{}", "model/pytorch_model.bin": _payload(canary)},
               tmp_path / "model.7z")
    report = scan_file(path)
    assert report.verdict == "unsafe" and report.format == "7z"
    clean = _7z({"config.json": b"{}", "w.bin": bytes(4096),
                 "state.pkl": pickle_of_plain_data()}, tmp_path / "clean.7z")
    assert scan_file(clean).verdict == "clean"
    assert not canary.exists()


def test_7z_without_py7zr_is_never_clean(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    path = _7z({"config.json": b"{}"}, tmp_path / "model.7z")
    monkeypatch.setitem(__import__("sys").modules, "py7zr", None)  # not installed
    report = scan_file(path)
    assert report.verdict == "error" and "7z archive: not scanned (install py7zr)" in report.reason


def test_7z_member_climbing_out(tmp_path: Path) -> None:
    """py7zr refuses to write '..' names; other writers do not: the name is edited in place
    and the header CRCs recomputed (7zFormat.txt: start header, next header)."""
    path = _7z({"XX/XX/evil.sh": b"echo hi"}, tmp_path / "escape.7z")
    raw = bytearray(path.read_bytes())
    at = raw.index("XX/XX/".encode("utf-16-le"))
    raw[at:at + 12] = "../../".encode("utf-16-le")
    offset, size = struct.unpack_from("<QQ", raw, 12)
    header = bytes(raw[32 + offset:32 + offset + size])
    struct.pack_into("<I", raw, 28, zlib.crc32(header))
    struct.pack_into("<I", raw, 8, zlib.crc32(bytes(raw[12:32])))
    path.write_bytes(bytes(raw))
    report = scan_file(path)
    assert report.verdict == "unsafe" and "7z-path" in _rules(report), report.to_json()


def test_a_payload_decompressed_by_the_pickle_itself_is_read_whole(tmp_path: Path) -> None:
    """gzip.decompress (called by a pickle on its own bytes) reads every member."""
    first, second = _split(_payload(tmp_path / "CANARY"))
    blob = gzip.compress(first) + gzip.compress(second)
    outer = P.pickle(P.glob("pickle", "loads"), P.MARK, P.glob("gzip", "decompress"), P.MARK,
                     P.b(blob), P.TUPLE, P.REDUCE, P.TUPLE, P.REDUCE, proto=2)
    path = tmp_path / "nested.pkl"
    path.write_bytes(outer)
    report = scan_file(path)
    assert any(f.rule == "gadget-import" and f.subject == "os.system" for f in report.findings)


def test_utf8_member_names_are_not_a_name_mismatch(tmp_path: Path) -> None:
    """A zip member named in UTF-8 (flag 0x800, as zipfile writes non-ASCII names) is the same
    name in its local header: no zip-name-mismatch, and plain data stays clean (the local
    header's flags were read from the wrong field before, and such a file was called unsafe)."""
    import pickle
    import zipfile

    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("modèle/data.pkl", pickle.dumps({"epoch": 3}, protocol=2))
        z.writestr("modèle/version", "3\n")
    rep = scan_file(path)
    assert rep.verdict == "clean", [(f.rule, f.message) for f in rep.findings]
    assert not [f for f in rep.findings if f.rule == "zip-name-mismatch"]


@pytest.mark.parametrize("method", ["deflate", "bzip2", "lzma"])
def test_compressed_npz_members_are_read_and_judged(tmp_path: Path, method: str) -> None:
    """np.load reads an npz whose members zipfile compressed with deflate, bzip2 or LZMA (zip's
    LZMA: a 4-byte header, LZMA1 properties, a raw stream); the scanner reads each the same
    way and judges what is inside: an object array's pickle is found, a numeric one is clean."""
    import zipfile

    kind = {"deflate": zipfile.ZIP_DEFLATED, "bzip2": zipfile.ZIP_BZIP2,
            "lzma": zipfile.ZIP_LZMA}[method]
    from string import Template

    for objects in (False, True):
        # a class off the allowlist: loading the array imports it, so never clean
        arr = np.array([Template("x")], dtype=object) if objects else np.arange(6.0)
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=objects)  # the test writes its own fixture
        path = tmp_path / f"{method}-{objects}.npz"
        with zipfile.ZipFile(path, "w", compression=kind) as z:
            z.writestr("a.npy", buf.getvalue())
        rep = scan_file(path)
        assert not rep.errors, rep.errors
        if objects:
            assert "a.npy (object data) @128" in rep.scanned, rep.scanned
            assert rep.verdict != "clean", rep.findings
            assert any(f.subject == "string.Template" for f in rep.findings), rep.findings
        else:
            assert rep.verdict == "clean", rep.findings


def test_a_zlib_error_needs_no_lzma() -> None:
    """Judging bytes that only look like a zlib stream raises and catches zlib's error without
    importing lzma (a Python built without _lzma still scans them)."""
    import subprocess
    import sys

    code = ("import sys\nsys.modules['lzma'] = None\n"
            "from modelport.containers import compress\n"
            "print(compress.kind_of(b'\\x78\\x9c' + b'\\xff' * 100))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "None", out.stderr
