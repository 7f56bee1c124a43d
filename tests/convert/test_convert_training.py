"""Training checkpoints: --full keeps everything, and training resumes exactly as from the original.

checkpoint.pt -> safetensors (--full) -> .pt gives back a dict equal to the original (int keys,
tuples, None, floats and every optimizer tensor), ``optimizer.load_state_dict`` accepts it, and
one more step lands on exactly the same parameters and optimizer state as resuming from the
original file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
from convert_helpers import need  # noqa: E402
from torch import nn  # noqa: E402

from modelport.cli import main  # noqa: E402
from modelport.convert import convert, verify  # noqa: E402
from modelport.errors import UsageError  # noqa: E402


def assert_tree_equal(a: Any, b: Any, where: str = "") -> None:
    """Equal as Python values, with tensors equal bit for bit (dtype, shape, bytes, grad flag)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert (a.dtype, a.shape, a.requires_grad) == (b.dtype, b.shape, b.requires_grad), where
        ua, ub = (t.detach().contiguous().reshape(-1).view(torch.uint8) for t in (a, b))
        assert torch.equal(ua, ub), f"{where}: tensor bytes differ"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{where}: keys {list(a)} {list(b)}"
        for k in a:
            assert type(k) is type(next(x for x in b if x == k)), f"{where}: key type of {k!r}"
            assert_tree_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{where}: {type(a)} vs {type(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_tree_equal(x, y, f"{where}.{i}")
    else:
        assert type(a) is type(b) and (a == b or (a != a and b != b)), f"{where}: {a!r} != {b!r}"


def _resume(ck: dict) -> tuple[dict, dict]:
    """One more training step from a checkpoint, with fixed data: (model, optimizer) state."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.load_state_dict(ck["model_state_dict"])
    opt.load_state_dict(ck["optimizer_state_dict"])
    x = torch.randn(4, 4, generator=torch.Generator().manual_seed(9))
    loss = model(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return model.state_dict(), opt.state_dict()


@pytest.mark.parametrize("name", ["training_zip", "training_legacy"])
def test_resume_through_safetensors(corpus: dict[str, Path], tmp_path: Path, name: str) -> None:
    src = need(corpus, name)
    st, back = tmp_path / "ckpt.safetensors", tmp_path / "back.pt"
    convert(src, st, full=True, verify=True)
    convert(st, back, full=True, verify=True)
    original = torch.load(src, weights_only=True)
    restored = torch.load(back, weights_only=True)
    assert_tree_equal(restored, original)
    m1, o1 = _resume(original)
    m2, o2 = _resume(restored)
    assert_tree_equal(m2, m1, "model")
    assert_tree_equal(o2, o1, "optimizer")


def test_full_safetensors_layout(corpus: dict[str, Path], tmp_path: Path) -> None:
    """Tensors under their tree paths, the plain values as JSON, readable by safe_open."""
    from safetensors import safe_open

    st = tmp_path / "ckpt.safetensors"
    convert(need(corpus, "training_zip"), st, full=True)
    with safe_open(str(st), framework="pt") as f:
        names = set(f.keys())
        tree = json.loads(f.metadata()["modelport.tree"])
    assert "optimizer_state_dict.state.0.exp_avg" in names and "model_state_dict.0.weight" in names
    assert tree["epoch"] == 3 and tree["loss"] == 0.12
    assert tree["optimizer_state_dict"]["param_groups"][0]["betas"] == {"__tuple__": [0.9, 0.999]}


def test_lightning_checkpoint_full_round_trip(corpus: dict[str, Path], tmp_path: Path) -> None:
    src = need(corpus, "lightning")
    st, back = tmp_path / "last.safetensors", tmp_path / "last.ckpt"
    convert(src, st, full=True)
    convert(st, back, full=True)
    assert_tree_equal(torch.load(back, weights_only=True), torch.load(src, weights_only=True))
    assert verify(src, back, full=True).same


def test_weights_only_by_default_with_a_note(corpus: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    dst = tmp_path / "w.safetensors"
    assert main(["convert", str(need(corpus, "training_zip")), str(dst)]) == 0
    err = capsys.readouterr().err
    assert ("note: left out optimizer_state_dict: 12 tensors, epoch=3, loss=0.12; "
            "use --full to keep them") in err
    from safetensors import safe_open

    with safe_open(str(dst), framework="pt") as f:
        assert sorted(f.keys()) == ["0.bias", "0.weight", "2.bias", "2.weight"]


def test_select_a_subtree(corpus: dict[str, Path], tmp_path: Path) -> None:
    dst = tmp_path / "opt.pt"
    convert(need(corpus, "training_zip"), dst, select="optimizer_state_dict", full=True)
    opt = torch.load(dst, weights_only=True)
    original = torch.load(need(corpus, "training_zip"), weights_only=True)
    assert_tree_equal(opt, original["optimizer_state_dict"])


def test_full_refuses_placeholders(corpus: dict[str, Path], tmp_path: Path) -> None:
    """A whole pickled model is an object modelport only knows by name: --full says so."""
    with pytest.raises(UsageError, match=r"train_netmod\.Net") as exc:
        convert(need(corpus, "full_model"), tmp_path / "m.safetensors", full=True,
                allow_unsafe=True)
    assert "drop --full" in str(exc.value)
    assert list(tmp_path.iterdir()) == []
