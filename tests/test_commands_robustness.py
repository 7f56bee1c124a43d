"""The commands never show a traceback and never leave partial output (DESIGN.md property 5).

The readers are fuzzed in test_robustness.py; this file fuzzes what is built on them:
``convert`` (into every format, with --full, --dedupe, --dtype, --max-shard-size, --jobs),
``verify``, ``diff`` and ``scan`` (--json, --sarif), all through ``modelport.cli.main``.
Inputs are the session ``corpus`` and mutated copies of it: truncations, byte flips in headers
and zip directories, data.pkl rewritten (and re-zipped stored), safetensors headers with bad
offsets, a ``modelport.tree`` that was edited, repo folders with a missing, extra, corrupt or
malicious shard. The contract checked on every run:

    exit code      convert 0/2, verify and diff 0/1/2, scan 0/1/2 (1 whenever a file is unsafe)
    stderr         no traceback, no "internal error"; an error is ONE line naming a path
    convert        a failure leaves the folder DST goes into as it was (no DST, no temporary
                   sibling); SRC is never modified; a success reads back: verify SRC DST is 0
    scan --json    parses (strictly: no NaN), whatever failed

and, for ``verify``/``diff``: one tensor that differs in dtype, shape or a single byte is a
difference (exit 1), in any pair of formats. Malicious pickles are assembled from opcodes here
and never loaded by anything but modelport.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import shutil
import struct
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from testkit import (  # noqa: E402
    binunicode,
    data_pkl,
    deadline,
    edits,
    mutate,
    rezip,
    torch_zip,
)

from modelport.cli import main  # noqa: E402

# -- running a command and checking the contract ---------------------------------------------------

_COUNTER = itertools.count()


class Hang(BaseException):
    """Not an Exception: the scanner's last-resort ``except Exception`` must not swallow it."""


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """``modelport ARGV``; asserts what holds for every command, whatever the input."""
    capsys.readouterr()
    with deadline(30, Hang):
        code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    allowed = {"convert": {0, 2}, "scan": {0, 1, 2}}.get(str(argv[0]), {0, 1, 2})
    assert code in allowed, (argv, code, err)
    return code, out, err


def error_line(err: str, command: str, *paths: Path | str) -> str:
    """The one error line of a failed command; it names one of ``paths`` (or a file in it)."""
    lines = [ln for ln in err.splitlines() if ln.startswith(f"modelport {command}: error: ")]
    assert len(lines) == 1 and len(err.strip().splitlines()) == 1, err
    assert any(str(p) in lines[0] for p in paths), (lines[0], paths)
    return lines[0]


def fingerprint(path: Path) -> dict[str, str]:
    """SHA-256 of a file, or of every file in a folder (by relative name)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path)) if p != path else "": hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files}


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


# (DST suffix, options): every output format and the options that change how it is written.
TARGETS: list[tuple[str, tuple[str, ...]]] = [
    (".safetensors", ()),
    (".pt", ()),
    (".npz", ()),
    ("", ()),  # a folder: the sharded Hugging Face layout
    (".safetensors", ("--full",)),
    (".pt", ("--full",)),
    (".safetensors", ("--dedupe",)),
    ("", ("--dtype", "BF16")),
    ("", ("--max-shard-size", "20KB", "--jobs", "2")),
    ("", ("--to", "torch", "--max-shard-size", "20KB")),
    (".safetensors", ("--verify", "--dtype", "F16")),
]


def convert(capsys: pytest.CaptureFixture[str], src: Path, out: Path, suffix: str,
            opts: tuple[str, ...] = (), *, allow_unsafe: bool = False) -> tuple[int, str]:
    """``convert SRC OUT/dstN<suffix>`` and the contract: SRC untouched; on failure exit 2, one
    line naming SRC or DST, OUT exactly as it was; on success DST reads back as SRC's tensors."""
    out.mkdir(exist_ok=True)
    dst = out / f"dst{next(_COUNTER)}{suffix}"
    before, src_print = listing(out), fingerprint(src)
    code, _, err = run(capsys, "convert", src, dst, "-q", *opts,
                       *(["--allow-unsafe"] if allow_unsafe else []))
    assert fingerprint(src) == src_print, "convert modified its source"
    if code != 0:
        error_line(err, "convert", src, dst)
        assert listing(out) == before, f"left behind: {set(listing(out)) - set(before)}"
        return code, err
    assert listing(out) == sorted(before + [dst.name]), listing(out)
    check = (["--full"] if "--full" in opts else
             ["--cast", opts[opts.index("--dtype") + 1]] if "--dtype" in opts else [])
    vcode, vout, verr = run(capsys, "verify", src, dst, *check)
    assert vcode == 0, (src, opts, vout, verr)
    shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
    return code, err


def all_commands(capsys: pytest.CaptureFixture[str], src: Path, reference: Path) -> None:
    """verify/diff against the unmutated file, and scan --json/--sarif, on one mutant."""
    for command in ("verify", "diff"):
        code, _, err = run(capsys, command, src, reference)
        if code == 2:
            error_line(err, command, src, reference)
    scan(capsys, src)


def strict_json(text: str) -> object:
    """json.loads that refuses NaN and Infinity, as jq and most parsers do."""
    def refuse(name: str) -> object:
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def scan(capsys: pytest.CaptureFixture[str], *paths: Path) -> tuple[int, dict]:
    """scan --json and --sarif: both parse, agree with each other and with the exit code."""
    code, out, _ = run(capsys, "scan", *paths, "--json")
    doc = strict_json(out)
    assert isinstance(doc, dict)
    verdicts = {f["verdict"] for f in doc["files"]}
    assert not [e for f in doc["files"] for e in f["errors"] if "internal error" in e], doc
    assert code == (1 if verdicts & {"unsafe", "needs-code"} else
                    2 if "error" in verdicts or not verdicts else 0)
    assert doc["verdict"] == next((v for v in ("unsafe", "needs-code", "error") if v in verdicts),
                                  "clean" if verdicts else "error")
    assert sum(doc["counts"].values()) == len(doc["files"])
    scode, sout, _ = run(capsys, "scan", *paths, "--sarif")
    sarif = strict_json(sout)
    assert scode == code and sarif["version"] == "2.1.0"  # type: ignore[index]
    return code, doc


# -- mutations -------------------------------------------------------------------------------------


def corpus_files(corpus: dict[str, Path]) -> list[str]:
    return sorted(n for n, p in corpus.items() if p.is_file())


def write(tmp: Path, data: bytes, suffix: str) -> Path:
    p = tmp / f"case{next(_COUNTER)}{suffix}"  # fresh names: readers cache archives by path
    p.write_bytes(data)
    return p


def cuts(data: bytes) -> list[int]:
    """Where truncation hurts: the magic, the first header, the middle, the zip directory."""
    n = len(data)
    return sorted({c for c in (1, 8, 9, 30, 100, n // 3, n // 2, n - 100, n - 22, n - 1)
                   if 0 < c < n})


def flips(data: bytes, rng: random.Random, lo: int, hi: int) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(lo, hi)
        buf[i] = rng.choice([0x00, 0xFF, rng.randrange(256), buf[i] ^ (1 << rng.randrange(8))])
    return bytes(buf)


# A loader that unpickles this runs `true`: os.system("true"). Opcodes, never pickle.loads.
GADGET = b"cos\nsystem\nX\x04\x00\x00\x00trueR"


def with_gadget(pkl: bytes) -> bytes:
    """A data.pkl that still reads as the same checkpoint, but calls os.system first (then POPs
    the result): what a tampered download looks like."""
    assert pkl[:1] == b"\x80"
    return pkl[:2] + GADGET + b"0" + pkl[2:]


def safetensors_bytes(header: dict | bytes, data: bytes) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


# -- convert, verify, diff, scan on truncated and flipped corpus files ----------------------------


def test_truncated_sources(corpus: dict[str, Path], tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    failed = 0
    for name in corpus_files(corpus):
        data = corpus[name].read_bytes()
        for cut in cuts(data):
            src = write(tmp_path, data[:cut], corpus[name].suffix)
            for suffix, opts in TARGETS:
                failed += convert(capsys, src, tmp_path / "out", suffix, opts)[0] == 2
            all_commands(capsys, src, corpus[name])
    assert failed > 2000  # truncation is an error, not a smaller model


def test_flipped_headers_and_zip_directories(corpus: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    for name in corpus_files(corpus):
        data = corpus[name].read_bytes()
        rng = random.Random(name)
        n = len(data)
        for lo, hi in ((0, min(n, 512)), (max(0, n - 512), n)):  # headers; the zip directory
            for _ in range(4):
                src = write(tmp_path, flips(data, rng, lo, hi), corpus[name].suffix)
                for suffix, opts in TARGETS:
                    convert(capsys, src, tmp_path / "out", suffix, opts)
                all_commands(capsys, src, corpus[name])


_ARCHIVES = ("dtypes_zip", "layouts_zip", "training_zip", "lightning", "full_model", "torchscript",
             "quantized_zip")
@settings(max_examples=100, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(archive=st.sampled_from(_ARCHIVES), edit_list=st.lists(edits(), min_size=1, max_size=3),
       target=st.sampled_from(TARGETS), allow_unsafe=st.booleans())
def test_rewritten_data_pkl(corpus: dict[str, Path], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str], archive: str, edit_list: list,
                            target: tuple[str, tuple[str, ...]], allow_unsafe: bool) -> None:
    if archive not in corpus:
        pytest.skip(f"{archive} not in the corpus")
    src = rezip(corpus[archive], mutate(data_pkl(corpus[archive]), edit_list),
                tmp_path / f"m{next(_COUNTER)}.pt")
    code, err = convert(capsys, src, tmp_path / "out", *target, allow_unsafe=allow_unsafe)
    if code == 2 and "code a loader would run" in err:
        assert not allow_unsafe and "--allow-unsafe" in err
    all_commands(capsys, src, corpus[archive])


# -- safetensors headers and the modelport.tree a --full output records ----------------------------

_F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
BAD_HEADERS: dict[str, bytes] = {
    "overlap": safetensors_bytes({"a": _F32x2, "b": {**_F32x2, "data_offsets": [4, 12]}},
                                 bytes(12)),
    "past-the-end": safetensors_bytes({"a": {**_F32x2, "data_offsets": [0, 80]}}, bytes(8)),
    "negative": safetensors_bytes({"a": {**_F32x2, "data_offsets": [-8, 0]}}, bytes(8)),
    "reversed": safetensors_bytes({"a": {**_F32x2, "data_offsets": [8, 0]}}, bytes(8)),
    "size-mismatch": safetensors_bytes({"a": {**_F32x2, "shape": [3]}}, bytes(8)),
    "hole": safetensors_bytes({"a": {**_F32x2, "data_offsets": [8, 16]}}, bytes(16)),
    "float-offsets": safetensors_bytes({"a": {**_F32x2, "data_offsets": [0.0, 8.0]}}, bytes(8)),
    "shape-overflows": safetensors_bytes({"a": {**_F32x2, "shape": [2**62, 4]}}, bytes(8)),
    "unknown-dtype": safetensors_bytes({"a": {**_F32x2, "dtype": "Q9"}}, bytes(8)),
    "header-past-the-end": struct.pack("<Q", 4096) + b'{"a": 1}',
    "header-2**63": struct.pack("<Q", 2**63) + b"{}",
    "header-not-json": safetensors_bytes(b"{" + b" " * 15, bytes(8)),
    "header-a-list": safetensors_bytes(b"[1, 2, 3]       ", bytes(8)),
    "metadata-not-strings": safetensors_bytes({"__metadata__": {"x": 1}, "a": _F32x2}, bytes(8)),
}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_bad_safetensors_headers(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 case: str) -> None:
    src = write(tmp_path, BAD_HEADERS[case], ".safetensors")
    for suffix, opts in TARGETS:
        assert convert(capsys, src, tmp_path / "out", suffix, opts)[0] == 2
    for command in ("verify", "diff"):
        code, _, err = run(capsys, command, src, src)
        assert code == 2
        error_line(err, command, src)
    code, doc = scan(capsys, src)
    # A header readers disagree on, or an error; or bytes no sniffer claims (nothing to run).
    assert code in (1, 2) or doc["files"][0]["format"] is None, doc


def _tree_file(tmp: Path, tree: object, names: tuple[str, ...] = ("a", "b")) -> Path:
    raw = tree if isinstance(tree, str) else json.dumps(tree)
    header: dict[str, object] = {"__metadata__": {"format": "pt", "modelport.tree": raw}}
    for k, n in enumerate(names):
        header[n] = {"dtype": "F32", "shape": [2], "data_offsets": [8 * k, 8 * k + 8]}
    return write(tmp, safetensors_bytes(header, bytes(8 * len(names))), ".safetensors")


# An edited modelport.tree: every one of these was a TypeError/ValueError/IndexError/
# RecursionError traceback, or (the last four) a tensor of the file silently dropped.
BAD_TREES: dict[str, object] = {
    "not-json": "{not json",
    "nested-past-the-json-parser": "[" * 100_000 + "]" * 100_000,
    "nested-500": "[" * 500 + '{"__tensor__": "a"}, {"__tensor__": "b"}' + "]" * 500,
    "tuple-of-an-int": {"x": {"__tuple__": 5}, "a": {"__tensor__": "a"}},
    "float-of-a-word": {"x": {"__float__": "abc"}},
    "bytes-not-base64": {"x": {"__bytes__": "!!!"}},
    "bytes-of-an-int": {"x": {"__bytes__": 5}},
    "dict-of-ints": {"x": {"__dict__": [1]}},
    "dict-of-an-int": {"x": {"__dict__": 3}},
    "set-of-dicts": {"x": {"__set__": [{"k": 1}]}},
    "dict-key-a-dict": {"x": {"__dict__": [[[1, {"q": 1}], 2]]}},
    "complex-empty": {"x": {"__complex__": []}},
    "complex-of-a-word": {"x": {"__complex__": ["x", 1]}},
    "tensor-a-list": {"x": {"__tensor__": ["a"]}},
    "tensor-not-in-the-file": {"x": {"__tensor__": "zz"}, "a": {"__tensor__": "a"}},
    "leaves-a-tensor-out": {"x": {"__tensor__": "a"}},
    "a-number": 5,
    "a-string": "x",
    "a-global": {"__global__": 5},
}


@pytest.mark.parametrize("case", sorted(BAD_TREES))
def test_edited_modelport_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               case: str) -> None:
    src = _tree_file(tmp_path, BAD_TREES[case])
    for suffix, opts in TARGETS[:6]:
        assert convert(capsys, src, tmp_path / "out", suffix, opts)[0] == 2
    for argv in (("verify", src, src), ("diff", src, src), ("inspect", src)):
        code, _, err = run(capsys, *argv)
        assert code == 2
        assert "modelport.tree" in error_line(err, str(argv[0]), src)
    assert scan(capsys, src)[0] == 0  # edited, not dangerous


def test_intact_modelport_tree_converts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The control for the cases above: a tree that names every tensor once reads back."""
    src = _tree_file(tmp_path, {"state_dict": {"x": {"__tensor__": "a"}},
                                "y": [{"__tensor__": "b"}, 1.5],
                                "z": {"__tuple__": [{"__float__": "nan"}]}})
    for suffix, opts in TARGETS[:6]:
        assert convert(capsys, src, tmp_path / "out", suffix, opts)[0] == 0


# -- Hugging Face folders -------------------------------------------------------------------------


def _index(folder: Path) -> Path:
    return next(p for p in folder.iterdir() if p.name.endswith(".index.json"))


def _shards(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))


def _malicious_shard(folder: Path) -> None:
    """The second shard replaced: a bare pickle that calls os.system (tensors go missing)."""
    _shards(folder)[1].write_bytes(b"\x80\x02" + GADGET + b".")


def _shard_is_a_folder(folder: Path) -> None:
    shard = _shards(folder)[1]
    shard.unlink()
    shard.mkdir()


REPO_MUTATIONS = {
    "missing-shard": lambda f: _shards(f)[1].unlink(),
    "extra-shard": lambda f: shutil.copy(_shards(f)[0], f / _shards(f)[0].name.replace("00001",
                                                                                     "00009")),
    "truncated-shard": lambda f: os.truncate(_shards(f)[2], 100),
    "shard-cut-in-its-data": lambda f: os.truncate(_shards(f)[2], _shards(f)[2].stat().st_size
                                                   - 64),
    "shard-is-a-folder": lambda f: _shard_is_a_folder(f),
    "index-not-json": lambda f: _index(f).write_text("[[[["),
    "index-without-weight-map": lambda f: _index(f).write_text('{"weight_map": 5}'),
    "index-points-outside": lambda f: _index(f).write_text(
        '{"weight_map": {"x": "../../etc/passwd"}}'),
    "config-not-json": lambda f: (f / "config.json").write_text("{{{"),
    "malicious-shard": _malicious_shard,
}


@pytest.mark.parametrize("repo", ["hf_bert_st", "hf_bert_bin"])
@pytest.mark.parametrize("mutation", sorted(REPO_MUTATIONS))
def test_mutated_repo_folders(corpus: dict[str, Path], tmp_path: Path,
                              capsys: pytest.CaptureFixture[str], repo: str, mutation: str) -> None:
    if repo not in corpus:
        pytest.skip(f"{repo} not in the corpus")
    src = tmp_path / repo
    shutil.copytree(corpus[repo], src)
    REPO_MUTATIONS[mutation](src)
    for suffix, opts in TARGETS:
        code, err = convert(capsys, src, tmp_path / "out", suffix, opts)
        assert code == 2
        if mutation == "malicious-shard":
            line = error_line(err, "convert", _shards(src)[1])  # names the shard, says why
            assert "code a loader would run" in line and "--allow-unsafe" in line
    for command in ("verify", "diff"):
        code, _, err = run(capsys, command, src, corpus[repo])
        assert code == 2
        error_line(err, command, src)
    code, doc = scan(capsys, src)
    if mutation == "malicious-shard":
        assert code == 1
    elif mutation in ("truncated-shard",):
        assert code == 2


# -- malicious sources ----------------------------------------------------------------------------


def _malicious_sources(corpus: dict[str, Path], tmp: Path) -> dict[str, Path]:
    """Files that read as a model, but a loader would run os.system first."""
    out = {name: rezip(corpus[name], with_gadget(data_pkl(corpus[name])), tmp / f"evil-{name}.pt")
           for name in ("layouts_zip", "training_zip")}
    repo = tmp / "evil-repo"
    shutil.copytree(corpus["hf_bert_bin"], repo)
    shard = _shards(repo)[1]
    rezip(shard, with_gadget(data_pkl(shard)), shard.with_suffix(".tmp")).replace(shard)
    out["hf_bert_bin"] = repo
    return out


def test_convert_refuses_malicious_sources(corpus: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    for name, src in _malicious_sources(corpus, tmp_path).items():
        assert scan(capsys, src)[0] == 1
        flagged = _shards(src)[1] if src.is_dir() else src
        for suffix, opts in TARGETS:
            code, err = convert(capsys, src, tmp_path / "out", suffix, opts)
            assert code == 2
            line = error_line(err, "convert", flagged)
            assert "code a loader would run" in line and "--allow-unsafe" in line
        # The tensors are the original's, and the output holds nothing to run.
        dst = tmp_path / f"{name}-converted.safetensors"
        code, _, _ = run(capsys, "convert", src, dst, "-q", "--allow-unsafe")
        assert code == 0
        assert run(capsys, "verify", corpus[name], dst)[0] == 0
        assert scan(capsys, dst)[0] == 0


# -- verify and diff: one difference is a difference ---------------------------------------------


def _save(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    else:
        torch.save(tensors, path)
    return path


def _base() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"w": torch.randn(3, 4, generator=g), "b": torch.randn(4, generator=g),
            "step": torch.tensor([7, 8], dtype=torch.int64)}


def _one_bit(t: torch.Tensor, index: int = 1) -> torch.Tensor:
    t = t.clone()
    t.view(-1).view(torch.uint8)[index] ^= 1
    return t


VARIANTS = {
    "dtype": lambda d: {**d, "b": d["b"].double()},
    "dtype-same-bits": lambda d: {**d, "step": d["step"].view(torch.float64)},
    "shape": lambda d: {**d, "w": d["w"].reshape(4, 3)},
    "rank": lambda d: {**d, "w": d["w"].reshape(12)},
    "one-bit-of-a-float": lambda d: {**d, "w": _one_bit(d["w"], 17)},
    "one-bit-of-an-int": lambda d: {**d, "step": _one_bit(d["step"], 8)},
    "renamed": lambda d: {"W": d["w"], "b": d["b"], "step": d["step"]},
    "missing": lambda d: {"w": d["w"], "b": d["b"]},
    "extra": lambda d: {**d, "c": torch.zeros(1)},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("formats", [(".pt", ".pt"), (".pt", ".safetensors"),
                                     (".safetensors", ".pt")])
def test_verify_and_diff_see_one_difference(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            variant: str, formats: tuple[str, str]) -> None:
    a = _save(tmp_path / f"a{formats[0]}", _base())
    b = _save(tmp_path / f"b{formats[1]}", VARIANTS[variant](_base()))
    same = _save(tmp_path / f"same{formats[1]}", _base())
    assert run(capsys, "verify", a, same)[0] == 0
    assert run(capsys, "diff", a, same)[0] == 0
    code, out, _ = run(capsys, "verify", a, b)
    assert code == 1 and "differ" in out, out
    code, out, _ = run(capsys, "verify", a, b, "--json")
    doc = strict_json(out)
    assert code == 1 and doc["same"] is False and doc["differences"]  # type: ignore[index]
    code, out, _ = run(capsys, "diff", a, b, "--json")
    assert code == 1 and strict_json(out)["same"] is False  # type: ignore[index]
    assert run(capsys, "verify", a, b, "--full")[0] == 1


def test_every_byte_of_every_tensor_is_compared(corpus: dict[str, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A safetensors conversion of a real file with one byte flipped, in each tensor in turn
    (first and last byte): verify and diff name that tensor, whatever the layout was."""
    src = corpus["layouts_zip"]
    dst = tmp_path / "layouts.safetensors"
    assert run(capsys, "convert", src, dst, "-q")[0] == 0
    data = dst.read_bytes()
    (hlen,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8:8 + hlen])
    checked = 0
    for name, info in header.items():
        if name == "__metadata__" or info["data_offsets"][0] == info["data_offsets"][1]:
            continue
        for at in (info["data_offsets"][0], info["data_offsets"][1] - 1):
            buf = bytearray(data)
            buf[8 + hlen + at] ^= 0x40
            bad = write(tmp_path, bytes(buf), ".safetensors")
            code, out, _ = run(capsys, "verify", src, bad)
            assert code == 1 and name in out, (name, out)
            code, out, _ = run(capsys, "diff", src, bad)
            assert code == 1 and name in out, (name, out)
            checked += 1
    assert checked >= 20


def test_one_dotted_name_for_two_tensors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A key "a.b" and a path a > b: two tensors, one dotted name. Neither may hide the other:
    verify --full used to compare only the first ("same" for files that differ), and every
    command (convert too) kept only one of them."""
    one, two, three = torch.ones(2), torch.zeros(2), torch.full((2,), 5.0)
    for wrap in (lambda d: d, lambda d: {"state_dict": d, "epoch": 1}):
        pa = _save(tmp_path / "a.pt", wrap({"a.b": one, "a": {"b": two}}))
        pb = _save(tmp_path / "b.pt", wrap({"a.b": one, "a": {"b": three}}))
        for extra in ([], ["--full"]):
            assert run(capsys, "verify", pa, pb, *extra)[0] == 1
            assert run(capsys, "diff", pa, pb, *extra)[0] == 1
        for suffix, opts in TARGETS:
            assert convert(capsys, pa, tmp_path / "out", suffix, opts)[0] == 0
        dst = tmp_path / f"a{next(_COUNTER)}.safetensors"
        assert run(capsys, "convert", pa, dst, "-q")[0] == 0
        assert run(capsys, "verify", pb, dst)[0] == 1


@pytest.mark.parametrize("a, b", [
    ([2**60], [2**60 + 1]),  # equal as float64
    ([2**62 + 3], [2**62 + 2]),
    ([-(2**63)], [2**63 - 1]),
])
def test_tolerance_compare_is_exact_for_integers(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 a: list[int], b: list[int]) -> None:
    """--atol compares values: 2**60 and 2**60 + 1 are different values (they used to be
    "same" through float64, and diff printed max |a - b| 0 for them)."""
    pa = _save(tmp_path / "a.pt", {"x": torch.tensor(a, dtype=torch.int64)})
    pb = _save(tmp_path / "b.pt", {"x": torch.tensor(b, dtype=torch.int64)})
    for tol in (["--atol", "0"], ["--rtol", "0"]):
        code, out, _ = run(capsys, "verify", pa, pb, *tol)
        assert code == 1, out
    code, out, _ = run(capsys, "diff", pa, pb, "--json")
    (change,) = strict_json(out)["changed"]  # type: ignore[index]
    assert code == 1 and change["max_abs"] == float(abs(a[0] - b[0]))


def test_verify_and_diff_json_with_nan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """max |a - b| is NaN when a NaN meets a number: --json must still be JSON."""
    pa = _save(tmp_path / "a.pt", {"x": torch.tensor([float("nan"), 1.0])})
    pb = _save(tmp_path / "b.pt", {"x": torch.tensor([1.0, float("inf")])})
    code, out, _ = run(capsys, "diff", pa, pb, "--json")
    assert code == 1 and strict_json(out)["changed"][0]["max_abs"] == "nan"  # type: ignore[index]
    code, out, _ = run(capsys, "verify", pa, pb, "--json", "--atol", "1")
    assert code == 1 and strict_json(out)["same"] is False  # type: ignore[index]


def test_verify_select_of_a_missing_subtree(corpus: dict[str, Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    src = corpus["training_zip"]
    for extra in ([], ["--full"]):  # --full used to raise a bare KeyError
        code, _, err = run(capsys, "verify", src, src, "--select", "nope", *extra)
        assert code == 2 and "nope" in error_line(err, "verify", src)


# -- convert: sources that read but cannot be written faithfully -----------------------------------


P2 = b"\x80\x02"


def _view(offset: int, size: tuple[int, int]) -> bytes:
    """{'w': a float tensor of ``size`` at ``offset`` into the 6-element storage data/0}."""
    pid = (b"(" + binunicode("storage") + b"ctorch\nFloatStorage\n" + binunicode("0") + binunicode("cpu")
           + b"K\x06tQ")
    args = (b"(" + pid + b"K" + bytes([offset]) + b"(K" + bytes([size[0]]) + b"K"
            + bytes([size[1]]) + b"t(K" + bytes([size[1]]) + b"K\x01t\x89"
            + b"ccollections\nOrderedDict\n)Rt")
    return P2 + b"}" + binunicode("w") + b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"Rs."


def test_view_past_its_storage_is_refused(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The torch writer copies whole storages: a view that reaches past its storage used to be
    written as it was, into a .pt that torch.load refuses."""
    good = torch_zip(_view(0, (2, 3)), tmp_path / "good.pt")
    bad = torch_zip(_view(10, (2, 3)), tmp_path / "bad.pt")
    for suffix, opts in TARGETS[:6]:
        assert convert(capsys, good, tmp_path / "out", suffix, opts)[0] == 0
        code, err = convert(capsys, bad, tmp_path / "out", suffix, opts)
        assert code == 2 and "storage" in err


def test_source_without_weights_is_an_error(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing to write used to give an empty output (an empty .npz nothing reads back)."""
    src = torch_zip(P2 + b"}" + binunicode("epoch") + b"K\x03s.", tmp_path / "values.pt")
    for suffix, opts in TARGETS:
        if "--full" in opts:
            continue  # --full keeps the plain values: that conversion is meaningful
        code, err = convert(capsys, src, tmp_path / "out", suffix, opts)
        assert code == 2 and "no weights" in err


def test_plan_errors_name_the_source(corpus: dict[str, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A tensor the output format cannot hold, a quantized tensor, a placeholder under --full:
    the line names the file as well as the tensor."""
    cases = [("dtypes_zip", ".npz", ()), ("quantized_zip", ".safetensors", ()),
             ("full_model", ".pt", ("--full", "--allow-unsafe"))]
    for name, suffix, opts in cases:
        if name not in corpus:
            continue
        code, err = convert(capsys, corpus[name], tmp_path / "out", suffix, opts)
        assert code == 2
        error_line(err, "convert", corpus[name])


# -- scan ------------------------------------------------------------------------------------------


def test_scan_json_with_errors_and_findings(corpus: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A folder of good, broken and malicious files: the JSON parses, the errors are listed,
    and the unsafe file decides the exit code (an error never hides a finding)."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(corpus["layouts_zip"], folder / "good.pt")
    data = corpus["training_zip"].read_bytes()
    (folder / "truncated.pt").write_bytes(data[: len(data) // 2])
    (folder / "short.safetensors").write_bytes(BAD_HEADERS["header-past-the-end"])
    (folder / "empty-subfolder").mkdir()
    os.mkfifo(folder / "a-fifo")  # must not block the scan
    code, doc = scan(capsys, folder)
    assert code == 2
    by_name = {Path(f["path"]).name: f for f in doc["files"]}
    assert by_name["good.pt"]["verdict"] == "clean"
    assert by_name["truncated.pt"]["verdict"] == "error" and by_name["truncated.pt"]["errors"]
    assert by_name["a-fifo"]["verdict"] == "error"
    rezip(corpus["layouts_zip"], with_gadget(data_pkl(corpus["layouts_zip"])),
          folder / "evil.pt")
    code, doc = scan(capsys, folder)
    assert code == 1
    assert {Path(f["path"]).name: f["verdict"] for f in doc["files"]}["evil.pt"] == "unsafe"
    code, doc = scan(capsys, folder / "evil.pt", folder / "truncated.pt", tmp_path / "nothing")
    assert code == 1 and [f["verdict"] for f in doc["files"]] == ["unsafe", "error", "error"]


def test_scan_says_why_nothing_was_scanned(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, why in ((empty, "no files"), (fifo, "not a regular file")):
        code, doc = scan(capsys, path)
        assert code == 2 and why in doc["files"][0]["errors"][0]


# -- a write that fails half way, in parallel workers ----------------------------------------------

_LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
from modelport.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("suffix, opts", [
    ("", ("--max-shard-size", "60KB", "--jobs", "2")),
    ("", ("--max-shard-size", "60KB", "--jobs", "4", "--to", "torch")),
    ("", ("--max-shard-size", "60KB", "--jobs", "3", "--dtype", "F16")),
    (".safetensors", ()),
    (".pt", ("--dtype", "BF16")),
    (".npz", ()),
])
def test_write_failing_half_way(corpus: dict[str, Path], tmp_path: Path, suffix: str,
                                opts: tuple[str, ...]) -> None:
    """Files may not grow past 40 KB (RLIMIT_FSIZE, in a child process): every shard worker
    fails part way through its file. Exit 2, one line naming DST, and nothing left behind."""
    import subprocess
    import sys

    src = corpus["hf_gpt2_st"]  # 123 KB of tensors: every output here is over the limit
    out = tmp_path / "out"
    out.mkdir()
    dst = out / f"dst{suffix}"
    before = fingerprint(src)
    proc = subprocess.run([sys.executable, "-c", _LIMITED, str(40_000), "convert", str(src),
                           str(dst), "-q", *opts], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    line = error_line(proc.stderr, "convert", dst)
    assert "larger than the file system allows" in line, line
    assert listing(out) == [] and fingerprint(src) == before
