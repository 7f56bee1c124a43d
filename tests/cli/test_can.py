"""`inspect` says what each file is good for (`can`), and the answers follow from its facts.

Every fixture of the corpus is inspected through main(); the expected answer is derived here
from the other fields of the same report (kind, dtypes, optimizer tensors, step values), so a
wrong rule in modelport.can and a wrong fact both show up.
"""

from __future__ import annotations

import json

from modelport.cli import main
from modelport.dtypes import by_name

QUESTIONS = {"inference", "fine_tune", "lora", "resume_training"}
ANSWERS = {"yes", "no", "after-conversion"}
GRAPHS = {"onnx", "tflite", "tf-savedmodel", "torchserve"}


def _json(capsys, path):
    assert main(["inspect", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _expected(d: dict) -> dict[str, str]:
    meta = d["metadata"] if isinstance(d["metadata"], dict) else {}
    optimizer = any(k.startswith("optim") for k in meta) or any(
        t["name"].startswith("optim") for t in d["other_tensors"])
    step = any(isinstance(meta.get(k), int) for k in ("epoch", "global_step", "step"))
    dt = d["dtypes"]
    quantized = any(by_name(n).kind == "q" for n in dt)
    floats = sum(n for k, n in dt.items() if k in ("F64", "F32", "F16", "BF16"))
    fp8 = sum(n for k, n in dt.items() if k.startswith("F8"))
    graph = d["format"] in GRAPHS
    if not d["weights"] and not graph:
        train = "no"
    elif graph or quantized:
        train = "after-conversion"
    elif floats * 2 >= sum(dt.values()):
        train = "yes"
    elif fp8 and (floats + fp8) * 2 >= sum(dt.values()):
        train = "after-conversion"
    else:
        train = "no"
    return {"inference": "yes" if d["weights"] or graph else "no", "fine_tune": train,
            "lora": train, "resume_training": "yes" if optimizer else "no",
            "_step": "step" if step else ""}


def test_every_fixture_answers_from_its_facts(corpus, capsys):
    seen = set()
    for name, path in sorted(corpus.items()):
        d = _json(capsys, path)
        can = d["can"]
        assert set(can) == QUESTIONS, name
        want = _expected(d)
        for q in QUESTIONS:
            a = can[q]
            assert a["answer"] in ANSWERS and a["why"], (name, q, a)
            assert ("how" in a) == (a["answer"] != "no"), (name, q, a)
            assert a["answer"] == want[q], (name, q, a, want)
            seen.add((d["format"], q, a["answer"]))
        if want["resume_training"] == "yes" and want["_step"]:
            assert "epoch" in can["resume_training"]["why"] or "step" in \
                can["resume_training"]["why"], name
    # the corpus exercises every answer
    assert {a for _, _, a in seen} == ANSWERS


def test_answers_name_what_it_takes(corpus, capsys):
    lightning = _json(capsys, corpus["lightning"])["can"]["resume_training"]
    assert lightning["answer"] == "yes" and "ckpt_path" in lightning["how"]
    full = _json(capsys, corpus["full_model"])["can"]["inference"]
    assert "train_netmod.Net" in full["how"] and "weights_only=False" in full["how"]
    training = _json(capsys, corpus["training_zip"])["can"]["inference"]
    assert "['model_state_dict']" in training["how"]
    onnx = _json(capsys, corpus["onnx"])["can"]
    assert onnx["inference"]["answer"] == "yes" and "onnxruntime" in onnx["inference"]["how"]
    assert "modelport convert" in onnx["fine_tune"]["how"]
    hf = _json(capsys, corpus["hf_gpt2_st"])
    assert "AutoModelForCausalLM.from_pretrained" in hf["can"]["inference"]["how"]
    assert hf["metadata"]["config"]["architectures"] == ["GPT2LMHeadModel"]
    # a bare state_dict whose architecture modelport.recognize verified: transformers builds it
    ref = _json(capsys, corpus["hf_gpt2_ref"])
    assert ref["architecture"]["class"] == "GPT2LMHeadModel"
    assert "AutoModelForCausalLM.from_config" in ref["can"]["inference"]["how"]
    bert = _json(capsys, corpus["hf_bert_bin"])
    arch = bert["metadata"]["config"]["architectures"][0]
    assert arch in bert["can"]["fine_tune"]["why"]


def test_text_view_says_it(corpus, capsys):
    assert main(["inspect", str(corpus["training_zip"])]) == 0
    out = capsys.readouterr().out
    assert "what it is good for:" in out
    assert "resume     yes: a training checkpoint" in out


def test_formats_without_code_paths_of_their_own():
    """Formats other helpers add get answers from their route row and the facts alone."""
    from modelport.can import Facts, answers

    q4 = answers(Facts("m.gguf", "gguf", "llama.cpp", "weights", 10, {"Q4_K": 100},
                       quantized="Q4_K tensors"))
    assert q4["inference"].answer == "yes" and "llama-cli" in q4["inference"].how
    assert q4["fine_tune"].answer == "after-conversion" and "gguf_file" in q4["fine_tune"].how
    f32 = answers(Facts("m.gguf", "gguf", "llama.cpp", "weights", 10, {"F32": 100}))
    assert f32["fine_tune"].answer == "after-conversion"
    keras = answers(Facts("m.keras", "keras", "tensorflow", "full-model", 10, {"F32": 100}))
    assert keras["lora"].answer == "yes" and "enable_lora" in keras["lora"].how
    assert "peft" not in keras["lora"].how
    tflite = answers(Facts("m.tflite", "tflite", "tensorflow", "weights", 10, {"I8": 100},
                           quantized="I8 tensors"))
    assert tflite["inference"].answer == "yes" and "Interpreter" in tflite["inference"].how
    assert tflite["fine_tune"].answer == "after-conversion"
    # a format the table has no row for falls back to its family's
    new = answers(Facts("x", "some-new-torch-format", "pytorch", "weights", 10, {"BF16": 100}))
    assert new["fine_tune"].answer == "yes" and "torch.load" in new["fine_tune"].how


def test_trainer_checkpoint_folder_resumes(corpus, tmp_path, capsys):
    """transformers' Trainer writes checkpoint-N/ with optimizer.pt and trainer_state.json."""
    import shutil

    import torch

    ckpt = tmp_path / "checkpoint-12"
    shutil.copytree(corpus["hf_gpt2_single_st"], ckpt)
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.AdamW([p])
    p.grad = torch.ones(3)
    opt.step()
    torch.save(opt.state_dict(), ckpt / "optimizer.pt")
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 12, "epoch": 0.5}))
    d = _json(capsys, ckpt)
    resume = d["can"]["resume_training"]
    assert resume["answer"] == "yes" and "global_step=12" in resume["why"]
    assert "resume_from_checkpoint" in resume["how"]
    roles = {f["path"]: f["role"] for f in d["files"]}
    assert roles["optimizer.pt"] == roles["trainer_state.json"] == "training state"
    # the same folder without the Trainer's state: weights only
    (ckpt / "optimizer.pt").unlink()
    assert _json(capsys, ckpt)["can"]["resume_training"]["answer"] == "no"
