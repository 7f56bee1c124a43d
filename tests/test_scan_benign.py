"""No false alarms: files written by the real libraries scan clean.

Every fixture of the reader corpus (tests/fixtures/generate.py), plus what training code
writes next to weights: Lightning checkpoints with hyper-parameters (argparse.Namespace,
AttributeDict), a transformers ``training_args.bin``, numpy RNG state, optimizer and scheduler
states. The one fixture that is not clean is a whole pickled model: loading it imports the
training script's own module, which is exactly what the scanner must say (and only that).
"""

from __future__ import annotations

import argparse
import datetime
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

from modelport.cli import main
from modelport.scan import FileReport, Severity, scan_file

torch = pytest.importorskip("torch")

# The fixture of a pickled whole model (torch.save(model) of a class in train_netmod.py).
WHOLE_MODEL = "full_model"


def _clean(report: FileReport, *, strict_too: bool = True) -> None:
    assert report.verdict == "clean", report.to_json()
    assert not report.errors
    assert not [f for f in report.findings if f.severity >= Severity.LOW], report.to_json()
    if strict_too:
        strict = scan_file(report.path, strict=True)
        assert strict.verdict == "clean", strict.to_json()


def test_every_reader_fixture_is_clean(corpus: dict[str, Path]) -> None:
    names = [n for n in corpus if n != WHOLE_MODEL]
    assert len(names) > 20
    for name in names:
        _clean(scan_file(corpus[name]))


def test_every_reader_fixture_exits_0(corpus: dict[str, Path],
                                      capsys: pytest.CaptureFixture) -> None:
    paths = [str(p) for n, p in corpus.items() if n != WHOLE_MODEL]
    assert main(["scan", *paths]) == 0
    assert "UNSAFE" not in capsys.readouterr().out


def test_whole_pickled_model_flags_only_its_own_classes(corpus: dict[str, Path]) -> None:
    report = scan_file(corpus[WHOLE_MODEL])
    assert report.verdict == "needs-code"  # its own classes: no gadget, but code to import
    flagged = {f.subject for f in report.unsafe_findings}
    assert flagged == {"train_netmod.Net", "train_netmod.Block"}
    assert set(report.needs_code) == flagged
    assert all(f.rule == "unknown-import" for f in report.unsafe_findings)
    layers = {f.subject for f in report.findings if f.rule == "ecosystem-object"}
    assert "torch.nn.modules.linear.Linear" in layers


def test_hf_folders_scan_clean_as_one_report(corpus: dict[str, Path]) -> None:
    for name in ("hf_bert_bin", "hf_gpt2_st"):
        report = scan_file(corpus[name])
        _clean(report, strict_too=False)
        assert len(report.scanned) >= 5


def test_lightning_checkpoint_with_hyperparameters(tmp_path: Path) -> None:
    pl = pytest.importorskip("lightning.pytorch")
    from lightning.fabric.utilities.data import AttributeDict

    class HParams(pl.LightningModule):
        def __init__(self, args: argparse.Namespace, extra: AttributeDict) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch, idx):  # noqa: ANN001, ANN201
            return self.layer(batch[0]).pow(2).mean()

        def configure_optimizers(self):  # noqa: ANN201
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    args = argparse.Namespace(lr=1e-3, layers=[4, 1], name="run-1", data_dir=tmp_path,
                              started=datetime.datetime(2025, 1, 2, 3, 4, 5))
    model = HParams(args, AttributeDict(seed=3, schedule={"warmup": 10}))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 4)),
                                       batch_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False,
                             accelerator="cpu", devices=1, default_root_dir=tmp_path)
        trainer.fit(model, data)
        trainer.save_checkpoint(tmp_path / "last.ckpt")
    report = scan_file(tmp_path / "last.ckpt")
    _clean(report, strict_too=False)
    objects = {f.subject for f in report.findings if f.rule == "ecosystem-object"}
    assert "argparse.Namespace" in objects and any("AttributeDict" in o for o in objects)
    assert scan_file(tmp_path / "last.ckpt", strict=True).verdict == "needs-code"


def test_transformers_training_args(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    training_args = pytest.importorskip("transformers.training_args")
    try:
        args = training_args.TrainingArguments(output_dir=str(tmp_path / "out"))
    except ImportError:
        # Without accelerate, TrainingArguments cannot set up its device in __post_init__;
        # skipping that step leaves the pickled fields (and their enums) as written.
        monkeypatch.setattr(training_args, "is_torch_available", lambda: False)
        args = training_args.TrainingArguments(output_dir=str(tmp_path / "out"))
    torch.save(args, tmp_path / "training_args.bin")
    report = scan_file(tmp_path / "training_args.bin")
    _clean(report, strict_too=False)
    objects = {f.subject for f in report.findings if f.rule == "ecosystem-object"}
    assert "transformers.training_args.TrainingArguments" in objects


def test_numpy_rng_state(tmp_path: Path) -> None:
    state = {
        "legacy": np.random.get_state(),
        "legacy_dict": np.random.get_state(legacy=False),
        "bit_generator": np.random.default_rng(0).bit_generator.state,
        "generator": np.random.default_rng(1),
        "random_state": np.random.RandomState(2),
        "torch": torch.get_rng_state(),
        "python": __import__("random").getstate(),
    }
    torch.save(state, tmp_path / "rng.pt")
    _clean(scan_file(tmp_path / "rng.pt"), strict_too=False)
    with open(tmp_path / "rng.pkl", "wb") as f:
        pickle.dump(state["generator"], f)
    _clean(scan_file(tmp_path / "rng.pkl"), strict_too=False)


def test_optimizer_and_scheduler_states(tmp_path: Path) -> None:
    params = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(2))]
    states = {}
    for name, opt in (("sgd", torch.optim.SGD(params, lr=0.1, momentum=0.9)),
                      ("adam", torch.optim.Adam(params, lr=1e-3, amsgrad=True)),
                      ("adamw", torch.optim.AdamW(params, lr=1e-3)),
                      ("rmsprop", torch.optim.RMSprop(params))):
        params[0].sum().backward()
        opt.step()
        states[name] = opt.state_dict()
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10) \
            if name == "sgd" else torch.optim.lr_scheduler.StepLR(opt, 2)
        states[f"{name}_sched"] = sched.state_dict()
    states["scaler"] = torch.amp.GradScaler("cpu").state_dict()
    torch.save(states, tmp_path / "optim.pt")
    torch.save(states, tmp_path / "optim_legacy.pt", _use_new_zipfile_serialization=False)
    for path in ("optim.pt", "optim_legacy.pt"):
        _clean(scan_file(tmp_path / path))


@pytest.mark.filterwarnings("ignore::UserWarning")  # sparse/nested tensors are "beta"
def test_tensor_kinds_torch_writes(tmp_path: Path) -> None:
    coo = torch.sparse_coo_tensor([[0, 1], [1, 0]], [1.0, 2.0], (2, 2))
    tagged = torch.ones(2)
    tagged.note = "python attribute"  # _rebuild_from_type_v2 with state
    state = {
        "coo": coo, "csr": coo.to_sparse_csr(), "meta": torch.empty(3, device="meta"),
        "nested": torch.nested.nested_tensor([torch.ones(2), torch.ones(3)]),
        "tagged": tagged, "param": torch.nn.Parameter(torch.ones(2)),
        "dtype": torch.bfloat16, "size": torch.Size([2, 3]), "device": torch.device("cpu"),
        "q": torch.quantize_per_tensor(torch.randn(4), 0.1, 0, torch.quint8),
        "f8": torch.ones(2, dtype=torch.float8_e4m3fn), "u16": torch.ones(2, dtype=torch.uint16),
        "numpy": np.arange(4, dtype=np.float32), "scalar": np.float64(2.5),
        "structured": np.zeros(2, dtype=[("a", "<f4"), ("b", "<i8")]),
        "strings": {"set": {1, 2}, "frozen": frozenset({3}), "bytes": b"\x00\x01", "c": 1 + 2j},
    }
    torch.save(state, tmp_path / "kinds.pt")
    _clean(scan_file(tmp_path / "kinds.pt"))
    for proto in (0, 1, 2, 3, 4, 5):
        with open(tmp_path / f"plain{proto}.pkl", "wb") as f:
            pickle.dump({"x": np.arange(3), "s": {1, 2}, "b": b"ab", "t": (1, 2.0, None)}, f,
                        protocol=proto)
        _clean(scan_file(tmp_path / f"plain{proto}.pkl"))


def test_compressed_and_object_free_numpy(tmp_path: Path) -> None:
    import gzip

    raw = pickle.dumps({"w": np.ones((2, 2), dtype=np.float16)}, protocol=4)
    (tmp_path / "state.pkl.gz").write_bytes(gzip.compress(raw))
    _clean(scan_file(tmp_path / "state.pkl.gz"), strict_too=False)
    np.save(tmp_path / "plain.npy", np.arange(6).reshape(2, 3))
    np.savez_compressed(tmp_path / "plain.npz", a=np.ones(3), b=np.zeros((2, 2), dtype="<i4"))
    for name in ("plain.npy", "plain.npz"):
        _clean(scan_file(tmp_path / name))
