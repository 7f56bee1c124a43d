"""Failures leave no partial output: full disk, Ctrl-C and kills, DST exists, DST is SRC, bad SRC.

Every test checks the folder DST was to go into afterwards: no DST, no temporary sibling (a
SIGKILL is the one case that may leave a ``.NAME.modelport-*.tmp``, never a DST).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from convert_helpers import need

from modelport.cli import main
from modelport.convert import convert
from modelport.convert.plan import Item, Shard
from modelport.convert.stream import Sink, Sources
from modelport.dtypes import by_name
from modelport.errors import OutputError, UsageError
from modelport.formats import writer_for
from modelport.formats.base import resolve
from modelport.model import Storage, TensorEntry

torch = pytest.importorskip("torch")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".modelport-" in p.name)


# -- DST and SRC ---------------------------------------------------------------------------------


def test_dst_exists_needs_force(corpus: dict[str, Path], tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    dst = tmp_path / "m.safetensors"
    dst.write_bytes(b"keep me")
    assert main(["convert", str(need(corpus, "layouts_zip")), str(dst)]) == 2
    err = capsys.readouterr().err
    assert "DST exists" in err and "--force" in err and "Traceback" not in err
    assert dst.read_bytes() == b"keep me"
    assert main(["convert", str(need(corpus, "layouts_zip")), str(dst), "--force", "-q"]) == 0
    assert dst.read_bytes()[:8] != b"keep me"
    assert _leftovers(tmp_path) == []


def test_force_replaces_a_folder(corpus: dict[str, Path], tmp_path: Path) -> None:
    dst = tmp_path / "repo"
    dst.mkdir()
    (dst / "stale.txt").write_text("old")
    convert(need(corpus, "hf_bert_st"), dst, force=True)
    assert not (dst / "stale.txt").exists() and (dst / "model.safetensors").exists()
    assert _leftovers(tmp_path) == []


def test_dst_is_src(corpus: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "m.pt"
    shutil.copy(need(corpus, "layouts_zip"), src)
    before = src.read_bytes()
    for dst in (src, tmp_path / "." / "m.pt"):
        with pytest.raises(OutputError, match="DST is SRC"):
            convert(src, dst, force=True, to="torch")
    link = tmp_path / "link.pt"
    link.symlink_to(src)
    with pytest.raises(OutputError, match="DST is SRC"):
        convert(link, src, force=True)
    assert src.read_bytes() == before


def test_dst_may_not_hold_or_be_a_source_file(corpus: dict[str, Path], tmp_path: Path) -> None:
    """--force on a folder that holds SRC would delete SRC; a shard of SRC is SRC too."""
    repo = tmp_path / "repo"
    shutil.copytree(need(corpus, "hf_bert_st"), repo)
    with pytest.raises(OutputError, match="holds a file SRC is read from"):
        convert(repo / "model-00001-of-00005.safetensors", repo, force=True)
    with pytest.raises(OutputError, match="DST is a file SRC is read from"):
        convert(repo, repo / "model-00002-of-00005.safetensors", force=True)
    assert sorted(p.name for p in repo.iterdir()) == sorted(
        p.name for p in need(corpus, "hf_bert_st").iterdir())


def test_missing_and_corrupt_src(corpus: dict[str, Path], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    dst = tmp_path / "out.safetensors"
    assert main(["convert", str(tmp_path / "nope.pt"), str(dst)]) == 2
    assert "no such file" in capsys.readouterr().err
    cut = tmp_path / "cut.pt"
    raw = need(corpus, "training_zip").read_bytes()
    cut.write_bytes(raw[: len(raw) // 2])
    assert main(["convert", str(cut), str(dst)]) == 2
    assert "cut.pt" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.pt"]


def test_unreadable_src(corpus: dict[str, Path]) -> None:
    """Permission denied. root reads everything, so as root the conversion runs in a forked
    child that became ``nobody`` (modelport is already imported: nothing else is read)."""
    work = Path(tempfile.mkdtemp(prefix="modelport-perm-"))  # /tmp: traversable by others
    try:
        work.chmod(0o777)
        src, dst, log = work / "secret.pt", work / "x.safetensors", work / "stderr.txt"
        shutil.copy(need(corpus, "layouts_zip"), src)
        src.chmod(0o000)
        argv = ["convert", str(src), str(dst)]
        if os.geteuid() != 0:
            with open(log, "w") as f, contextlib.redirect_stderr(f):
                code = main(argv)
        else:
            import pwd

            nobody = pwd.getpwnam("nobody")
            pid = os.fork()
            if pid == 0:  # the child: never returns into pytest
                try:
                    os.setgid(nobody.pw_gid)
                    os.setuid(nobody.pw_uid)
                    with open(log, "w") as f, contextlib.redirect_stderr(f):
                        code = main(argv)
                    os._exit(code)
                except BaseException:
                    os._exit(99)
            code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        err = log.read_text()
        assert code == 2, err
        assert "permission denied" in err.lower() and "secret.pt" in err
        assert sorted(p.name for p in work.iterdir()) == ["secret.pt", "stderr.txt"]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_missing_parent_folder(corpus: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        convert(need(corpus, "layouts_zip"), tmp_path / "no" / "such" / "m.safetensors")


def test_needs_code_source_converts_and_says_which_classes(corpus: dict[str, Path],
                                                           tmp_path: Path) -> None:
    # torch.save(model) names the model's own classes: loading it imports them (needs-code),
    # but modelport runs nothing, and its weights in safetensors are the remedy (issue #7).
    # Unsafe and unjudged sources are refused: tests/security/test_fail_closed.py.
    result = convert(need(corpus, "full_model"), tmp_path / "m.safetensors")
    assert (tmp_path / "m.safetensors").exists()
    assert any("names code off the allowlist" in n and "Net" in n for n in result.notes)


def test_bad_options(corpus: dict[str, Path], tmp_path: Path) -> None:
    src = need(corpus, "layouts_zip")
    with pytest.raises(UsageError, match="needs a folder"):
        convert(src, tmp_path / "m.safetensors", max_shard_size="1MB")
    with pytest.raises(UsageError, match="cannot tell the output format"):
        convert(src, tmp_path / "m.weird")
    with pytest.raises(UsageError, match="bad size"):
        convert(src, tmp_path / "repo", max_shard_size="lots")
    with pytest.raises(UsageError, match="--select 'nope'"):
        convert(src, tmp_path / "m.safetensors", select="nope")
    assert list(tmp_path.iterdir()) == []


# -- a full disk ---------------------------------------------------------------------------------


class _FullDisk(io.RawIOBase):
    """A file whose writes fail like a full disk after ``room`` bytes."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        if len(self.data) + len(b) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.data += b
        return len(b)


@pytest.mark.parametrize("fmt", ["safetensors", "torch", "npz"])
def test_injected_write_error(tmp_path: Path, fmt: str) -> None:
    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(1 << 20))
    f32 = by_name("F32")
    entry = TensorEntry("w", f32, (512, 512), Storage(1 << 20, path=str(src)))
    shard = Shard("", [Item("w", entry, f32)], tree={"w": entry}, metadata={"format": "pt"})
    with Sources() as sources:
        sink = Sink(_FullDisk(300_000), "/data/out.model", sources=sources)
        with pytest.raises(OutputError, match="the disk is full") as exc:
            resolve(writer_for(fmt).write)(shard, sink, sources, None)
    assert exc.value.path == "/data/out.model" and exc.value.offset is not None
    assert "free some space" in str(exc.value)


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 1 MiB tmpfs (root only)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                       capture_output=True)
    if r.returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.parametrize("dst", ["big.safetensors", "big.pt", "repo"])
def test_full_disk(tiny_disk: Path, tmp_path: Path, dst: str,
                   capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "big.pt"
    torch.save({"a": torch.randn(300_000), "b": torch.randn(10)}, src)
    args = ["convert", str(src), str(tiny_disk / dst)] + (["--max-shard-size", "500KB"]
                                                          if dst == "repo" else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "disk is full" in err and "Traceback" not in err
    assert list(tiny_disk.iterdir()) == []


# -- killed in the middle ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1.5 GB safetensors file, sparse (instant to make, read at memory speed)."""
    path = tmp_path_factory.mktemp("big") / "big.safetensors"
    n = 375 * 2**20
    header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}})
    header += " " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header.encode())
        f.truncate(8 + len(header) + 4 * n)
    return path


def _start(src: Path, dst: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "modelport", "convert", str(src), str(dst),
                             "--dtype", "BF16"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the temporary sibling is being written
        tmp = _leftovers(dst.parent)
        if tmp and (dst.parent / tmp[0]).stat().st_size > 1 << 20:
            return proc
        if proc.poll() is not None:
            pytest.fail(f"conversion ended before it could be interrupted: {proc.stderr.read()}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail("conversion never started writing")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_conversion_cleans_up(big_source: Path, tmp_path: Path, sig: int) -> None:
    dst = tmp_path / "out.safetensors"
    proc = _start(big_source, dst)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_killed_conversion_leaves_no_dst(big_source: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out.safetensors"
    proc = _start(big_source, dst)
    proc.kill()
    proc.communicate(timeout=60)
    assert not dst.exists()
    assert all(n.startswith(".out.safetensors.modelport-") for n in os.listdir(tmp_path))
