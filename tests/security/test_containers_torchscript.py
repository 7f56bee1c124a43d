"""TorchScript code is parsed with ast: real torch.jit.script/trace outputs stay clean; code
that reaches files, processes or Python modules is a finding. Archives are written by the real
torch.jit.save; hostile variants edit their code/ text (never compiled, never loaded)."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import NamedTuple, Optional

import pytest

from modelport.scan import scan_file
from modelport.scan.torchscript import analyse

torch = pytest.importorskip("torch")


class Pair(NamedTuple):
    a: torch.Tensor
    b: int


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.bn = torch.nn.BatchNorm1d(4)
        self.lstm = torch.nn.LSTM(4, 4)
        self.att = torch.nn.MultiheadAttention(4, 2)
        self.emb = torch.nn.Embedding(10, 4)

    def forward(self, x: torch.Tensor, extra: Optional[dict[str, torch.Tensor]] = None  # noqa: UP045
                ) -> torch.Tensor:
        y = self.bn(self.lin(x)).relu()
        z, _ = self.lstm(y.unsqueeze(0))
        a, _ = self.att(y.unsqueeze(0), y.unsqueeze(0), y.unsqueeze(0))
        fut = torch.jit.fork(torch.neg, y)
        p = Pair(torch.jit.wait(fut), 2)
        out = [y * float(i) for i in range(2)]
        if extra is not None:
            out.append(extra["k"])
        if isinstance(x, torch.Tensor) and len(out) > 1:
            print("sizes", x.size(0), math.sqrt(2.0))
        ids = torch.zeros(x.size(0), dtype=torch.long)
        return (torch.cat(out, 1).sum() + z.squeeze(0) + a.squeeze(0) + p.a * p.b +
                self.emb(ids) + torch.nn.functional.gelu(y))


def _archive(module: torch.jit.ScriptModule, path: Path) -> Path:
    torch.jit.save(module, str(path))
    return path


def _edit(src: Path, out: Path, change) -> Path:  # noqa: ANN001
    """Rewrite the archive with the first code/*.py text changed by ``change``."""
    done = False
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if not done and "/code/" in info.filename and info.filename.endswith(".py"):
                data, done = change(data.decode()).encode(), True
            zout.writestr(info, data)
    assert done
    return out


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _archive(torch.jit.script(Net().eval()), tmp_path_factory.mktemp("ts") / "net.pt")


def test_real_scripted_and_traced_programs_are_clean(scripted: Path, tmp_path: Path) -> None:
    traced = torch.jit.trace(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(),
                                                 torch.nn.LayerNorm(4)), torch.ones(2, 3))
    for path in (scripted, _archive(traced, tmp_path / "traced.pt")):
        report = scan_file(path)
        assert report.verdict == "clean", report.to_json()
        assert {f.rule for f in report.findings} <= {"torchscript-code"}
        assert not report.errors


def _forward(text: str, line: str) -> str:
    # insert a statement at the top of the first method body (4 spaces: TorchScript's indent)
    at = text.index(") -> ", text.index("  def "))
    at = text.index("\n", at) + 1
    return text[:at] + "    " + line + "\n" + text[at:]


@pytest.mark.parametrize("line, rule", [
    ("_x = torch.save(x, '/tmp/out')", "torchscript-file-op"),
    ("_x = torch.from_file('/etc/shadow', size=1)", "torchscript-file-op"),
    ("_x = ops.aten.from_file('/etc/shadow')", "torchscript-file-op"),
    ("import os", "torchscript-import"),
    ("_x = os.system('id')", "torchscript-system-op"),
    ("_x = open('/etc/passwd')", "torchscript-system-op"),
    ("_x = eval('1')", "torchscript-system-op"),
    ("_x = subprocess", "torchscript-system-op"),
    ("_x = requests_session", "torchscript-global"),
    ("_x = ops.evil_ns.run(x)", "torchscript-custom-op"),
    ("_x = torch.classes.evil_ns.Runner()", "torchscript-custom-op"),
])
def test_hostile_code_is_a_finding(line: str, rule: str, scripted: Path, tmp_path: Path) -> None:
    path = _edit(scripted, tmp_path / "hostile.pt", lambda t: _forward(t, line))
    report = scan_file(path)
    assert rule in {f.rule for f in report.findings}, report.to_json()
    assert report.verdict == "unsafe"


def test_locals_shadow_nothing_across_methods() -> None:
    """A name bound in one method is still a global in another."""
    code = ("class M(Module):\n  def a(self: __torch__.M) -> int:\n    os = 1\n    return os\n"
            "  def b(self: __torch__.M) -> int:\n    return os.getpid()\n")
    rules = {h.rule for h in analyse(code)[0]}
    assert "torchscript-system-op" in rules


def test_unparseable_code_is_not_clean(scripted: Path, tmp_path: Path) -> None:
    path = _edit(scripted, tmp_path / "broken.pt", lambda t: t + "\n  def (:\n")
    assert scan_file(path).verdict != "clean"


def test_every_code_file(scripted: Path) -> None:
    names = [n for n in zipfile.ZipFile(scripted).namelist() if "/code/" in n and
             n.endswith(".py")]
    assert len(names) > 3  # Net, Linear, BatchNorm1d, LSTM, MultiheadAttention ... all parsed
    for n in names:
        hits, _ = analyse(zipfile.ZipFile(scripted).read(n).decode())
        assert not hits, n  # (rnn.py holds PackedSequence, a NamedTuple: no methods)
