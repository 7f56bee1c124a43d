"""`modelport inspect`: the JSON contract of DESIGN.md and the human view, through main()."""

from __future__ import annotations

import json

import pytest

from modelport.cli import main


def _json(capsys, path, *extra):
    assert main(["inspect", str(path), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _text(capsys, path, *extra):
    assert main(["inspect", str(path), *extra]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "name, fmt, kind",
    [
        ("training_zip", "torch-zip", "training-checkpoint"),
        ("training_legacy", "torch-legacy", "training-checkpoint"),
        ("lightning", "torch-zip", "training-checkpoint"),
        ("full_model", "torch-zip", "full-model"),
        ("torchscript", "torchscript", "torchscript"),
        ("hf_gpt2_st", "hf-repo", "weights"),
        ("hf_bert_bin", "hf-repo", "weights"),
        ("onnx_external", "onnx", "onnx-graph"),
        ("npz", "numpy-npz", "weights"),
        ("hf_gpt2_single_st", "hf-repo", "weights"),
    ],
)
def test_json_contract(corpus, capsys, name, fmt, kind):
    d = _json(capsys, corpus[name])
    assert (d["format"], d["kind"]) == (fmt, kind)
    assert d["weights"], "every fixture holds weights"
    for w in d["weights"]:
        assert set(w) >= {"name", "dtype", "shape", "nbytes"}
        assert isinstance(w["shape"], list)
    assert d["parameters"] == sum(_numel(w["shape"]) for w in d["weights"])
    assert isinstance(d["metadata"], dict)


def _numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def test_training_checkpoint_values_and_optimizer_state(corpus, capsys):
    d = _json(capsys, corpus["training_zip"])
    assert d["weights_path"] == "model_state_dict"
    assert d["metadata"]["epoch"] == 3 and d["metadata"]["loss"] == 0.12
    assert any(t["name"].startswith("optimizer_state_dict.state.") for t in d["other_tensors"])
    text = _text(capsys, corpus["training_zip"])
    assert "epoch = 3" in text and "optimizer_state_dict.state" in text


def test_full_model_names_the_class_it_needs(corpus, capsys):
    text = _text(capsys, corpus["full_model"])
    assert "train_netmod.Net" in text and "extracted without it" in text


def test_repeated_layers_fold_unless_all(corpus, capsys):
    folded = _text(capsys, corpus["hf_gpt2_st"])
    assert "alike layers" in folded
    full = _text(capsys, corpus["hf_gpt2_st"], "--all")
    assert "alike layers" not in full
    d = _json(capsys, corpus["hf_gpt2_st"])
    for w in d["weights"]:
        assert w["name"] in full


def test_select_overrides_the_weights_choice(corpus, capsys):
    d = _json(capsys, corpus["training_zip"], "--select", "optimizer_state_dict")
    assert d["weights_path"] == "optimizer_state_dict"
    assert all(w["name"].startswith("state.") for w in d["weights"])


def test_select_of_a_missing_path_is_a_usage_error(corpus, capsys):
    assert main(["inspect", str(corpus["training_zip"]), "--select", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_sample_checkpoint_ships_with_the_project(capsys):
    from pathlib import Path

    sample = Path(__file__).parents[2] / "examples" / "sample_checkpoint.pt"
    d = _json(capsys, sample)
    assert d["kind"] == "training-checkpoint" and d["parameters"] > 0


def test_a_full_conversion_inspects_as_the_checkpoint_it_was(corpus, capsys, tmp_path):
    out = tmp_path / "full.safetensors"
    assert main(["convert", str(corpus["training_zip"]), str(out), "--full", "--quiet"]) == 0
    capsys.readouterr()
    d = _json(capsys, out)
    assert d["kind"] == "training-checkpoint"
    assert d["weights_path"] == "model_state_dict"
    assert d["metadata"]["epoch"] == 3 and d["metadata"]["loss"] == 0.12
    assert any(t["name"].startswith("optimizer_state_dict.") for t in d["other_tensors"])


def test_values_put_hyper_parameters_before_bookkeeping(corpus, capsys):
    text = _text(capsys, corpus["lightning"])
    values = text[text.index("values:"):]
    assert "hyper_parameters.hidden = 16" in values
    assert "loops = {...}" in values  # Lightning's loop state: folded, --json has it
    assert values.index("epoch = ") < values.index("hyper_parameters.") < values.index("loops")


def test_onnx_graph_summary_in_the_human_view(corpus, capsys):
    text = _text(capsys, corpus["onnx_external"])
    assert "opset ai.onnx" in text and "inputs      X F32[2, 4]" in text
