"""What a model file is good for: inference, fine-tuning, LoRA, resuming training.

``inspect`` answers four questions per file, each ``yes``, ``no`` or ``after-conversion``, with
why and (unless no) how::

    inference        run the model as it is
    fine_tune        train all its weights further
    lora             train a LoRA adapter on it (or: it is one)
    resume_training  continue the run that wrote it (optimizer state and step included)

The answers follow from facts modelport read, never from the file's name: the format and its
family, the kind of file, the weights' dtypes (trainable floats, fp8, quantized), whether the
weights come with a graph or code, optimizer state and a step counter, the class a pickled model
needs, the architecture a Hugging Face config names, a LoRA adapter's base model. Formats differ
only by a row of ``ROUTES`` (how each one is loaded, whether it is an inference graph), so a
format added to the registry gets answers from its family's row without code of its own here.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .dtypes import TRAINING_FLOATS

if TYPE_CHECKING:
    from .model import Checkpoint

__all__ = ["Answer", "Facts", "Route", "ROUTES", "facts", "answers", "can", "auto_class"]

YES, NO, AFTER = "yes", "no", "after-conversion"
QUESTIONS = ("inference", "fine_tune", "lora", "resume_training")


@dataclass(frozen=True)
class Answer:
    answer: str  # yes | no | after-conversion
    why: str
    how: str | None = None  # the command or code; None when the answer is no

    def json(self) -> dict[str, Any]:
        out = asdict(self)
        if out["how"] is None:
            del out["how"]
        return out


@dataclass(frozen=True)
class Route:
    """How a format is used, as data: one row per format id or family.

    ``load`` is the code that runs the file for inference ({path} is filled in); ``graph``
    says the file is an inference graph whose weights a trainer cannot use as they are;
    ``trainable`` says the loaded object can be trained as it is (an nn.Module, a Keras model).
    """

    load: str
    graph: bool = False
    trainable: bool = True
    extract: str = "modelport convert {path} weights.safetensors"
    dequantize: str = ("state = {{k: v.dequantize() if v.is_quantized else v for k, v in "
                       "torch.load({path!r}, weights_only=True).items()}}")
    # a whole model (kind full-model), when the format also holds weights-only files
    whole: str | None = None
    # how the run continues from a training checkpoint
    resume: str = ("ck = torch.load({path!r}, weights_only=True); model.load_state_dict(ck[...]); "
                   "optimizer.load_state_dict(ck[optimizer key]); start from the saved step")
    # how the loaded model is trained
    train: str = "model.train()  # then your training loop, or transformers.Trainer"
    # how a LoRA is put on the loaded model
    lora: str = ("model = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, "
                 "target_modules='all-linear'))")


# format id (or family, as a fallback) -> Route. A new format gets its family's row.
# Keras 3 layers carry LoRA themselves (Dense, EinsumDense, Embedding: layer.enable_lora)
_KERAS_RESUME = ("model = keras.saving.load_model({path!r})  # compiled, optimizer state "
                 "included\nmodel.fit(dataset, initial_epoch=N)")
_KERAS_TRAIN = "model.compile(optimizer='adam', loss=...); model.fit(dataset)"
_KERAS_LORA = ("[layer.enable_lora(8) for layer in model._flatten_layers() "
               "if hasattr(layer, 'enable_lora')]")

ROUTES: dict[str, Route] = {
    "hf-repo": Route("model = AutoModel.from_pretrained({path!r})"),
    "safetensors": Route("model = YourModel(); "
                         "model.load_state_dict(safetensors.torch.load_file({path!r}))"),
    "torch-zip": Route("model = YourModel(); "
                       "model.load_state_dict(torch.load({path!r}, weights_only=True){sub})"),
    "torch-legacy": Route("model = YourModel(); "
                          "model.load_state_dict(torch.load({path!r}, weights_only=True){sub})"),
    "pickle": Route("modelport convert {path} weights.safetensors  # then load them into "
                    "YourModel; unpickling the file would run it"),
    "torchscript": Route("model = torch.jit.load({path!r})  # runs the archive's TorchScript"),
    # TorchScript parameters train in place (torch.jit.load(...).train()): not a graph here
    "onnx": Route("session = onnxruntime.InferenceSession({path!r})", graph=True,
                  trainable=False),
    "tflite": Route("interpreter = tf.lite.Interpreter(model_path={path!r})", graph=True,
                    trainable=False),
    "tf-savedmodel": Route("model = tf.saved_model.load({path!r})", graph=True,
                           trainable=False),
    "keras": Route("model = keras.saving.load_model({path!r})  # imports what its config names",
                   lora=_KERAS_LORA, resume=_KERAS_RESUME, train=_KERAS_TRAIN),
    "keras-h5": Route("model = YourKerasModel(); model.load_weights({path!r})",
                      whole="model = keras.saving.load_model({path!r})  # imports what its "
                      "config names", lora=_KERAS_LORA, resume=_KERAS_RESUME,
                      train=_KERAS_TRAIN),
    "tf-metagraph": Route("saver = tf.compat.v1.train.import_meta_graph({path!r}); "
                          "saver.restore(sess, prefix)  # builds and runs the graph",
                          graph=True, trainable=False),
    "tf-checkpoint": Route("model = YourKerasModel(); "
                           "tf.train.Checkpoint(model=model).restore({path!r})",
                           resume="ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer); "
                           "ckpt.restore({path!r})  # optimizer.iterations is the step",
                           train=_KERAS_TRAIN, lora=_KERAS_LORA),
    "gguf": Route("llama-cli -m {path}  # llama.cpp (or llama_cpp.Llama(model_path=...))",
                  trainable=False,
                  extract="modelport convert {path} out/",
                  dequantize="model = AutoModelForCausalLM.from_pretrained(folder, "
                  "gguf_file={path!r})  # transformers dequantizes GGUF to F32"),
    "numpy-npy": Route("arr = np.load({path!r})  # one array; the model's code is needed"),
    "numpy-npz": Route("model = YourModel(); model.load_state_dict("
                       "{{k: torch.from_numpy(v) for k, v in np.load({path!r}).items()}})"),
    "torchserve-mar": Route("torchserve --models m={path}  # runs the archive's handler code",
                        graph=True, trainable=False),
    "peft-adapter": Route("model = PeftModel.from_pretrained(base_model, {path!r})"),
    # families: the fallback for a format without a row of its own
    "pytorch": Route("model = YourModel(); "
                     "model.load_state_dict(torch.load({path!r}, weights_only=True){sub})"),
    "huggingface": Route("model = AutoModel.from_pretrained({path!r})"),
    "tensorflow": Route("model = tf.saved_model.load({path!r})", graph=True, trainable=False),
    "llama.cpp": Route("llama-cli -m {path}", trainable=False),
    "exchange": Route("session = onnxruntime.InferenceSession({path!r})", graph=True,
                      trainable=False),
    "numpy": Route("arrays = np.load({path!r})"),
}
_DEFAULT = Route("(no known loader)", trainable=False)

# metadata keys of training state, by what they hold
_OPTIMIZER_KEYS = ("optimizer_state_dict", "optimizer_states", "optimizer", "optimizers",
                   "optim", "opt_state")
_STEP_KEYS = ("global_step", "step", "epoch", "iteration", "iter", "num_updates")
# transformers' Auto classes by the suffix of the architecture class name
_AUTO = (
    ("ForCausalLM", "AutoModelForCausalLM"), ("LMHeadModel", "AutoModelForCausalLM"),
    ("ForConditionalGeneration", "AutoModelForSeq2SeqLM"), ("ForMaskedLM", "AutoModelForMaskedLM"),
    ("ForSequenceClassification", "AutoModelForSequenceClassification"),
    ("ForTokenClassification", "AutoModelForTokenClassification"),
    ("ForQuestionAnswering", "AutoModelForQuestionAnswering"),
    ("ForImageClassification", "AutoModelForImageClassification"),
    ("ForSpeechSeq2Seq", "AutoModelForSpeechSeq2Seq"), ("ForCTC", "AutoModelForCTC"),
    ("ForPreTraining", "AutoModelForPreTraining"), ("Model", "AutoModel"),
)


def auto_class(architecture: str | None) -> str:
    """``LlamaForCausalLM`` -> ``AutoModelForCausalLM`` (``AutoModel`` when unknown)."""
    for suffix, auto in _AUTO:
        if architecture and architecture.endswith(suffix):
            return auto
    return "AutoModel"


@dataclass
class Facts:
    """What the answers are derived from; every field is read from the file, none guessed."""

    path: str
    format: str
    family: str
    kind: str
    parameters: int = 0
    dtypes: dict[str, int] = field(default_factory=dict)  # dtype name -> weight bytes
    quantized: str | None = None  # how: "QI8 tensors", "quantization_config: bitsandbytes"
    optimizer: bool = False
    step: str | None = None  # "global_step=2", "epoch=3"
    lightning: bool = False
    model_class: str | None = None  # a pickled whole model's class
    architecture: str | None = None  # a transformers class name
    custom_code: bool = False  # auto_map: loading runs the folder's .py files
    adapter: dict[str, Any] | None = None  # a LoRA adapter's summary (modelport.lora)
    weights_path: str | None = None  # the weights' subtree in a checkpoint
    trainer: bool = False  # a transformers Trainer checkpoint-N folder (optimizer.pt + state)


def _family(fmt: str) -> str:
    from .formats import get

    try:
        return get(fmt).family
    except Exception:  # noqa: BLE001 - an id the registry does not know: no family row
        return ""


def _architecture(ck: Checkpoint) -> str | None:
    """The first of config.json's ``architectures`` (a folder's own word for its class)."""
    cfg = ck.metadata.get("config") if isinstance(ck.metadata, dict) else None
    archs = cfg.get("architectures") if isinstance(cfg, dict) else None
    if isinstance(archs, list) and archs and isinstance(archs[0], str):
        return archs[0]
    return None


def facts(ck: Checkpoint, adapter: dict[str, Any] | None = None,
          architecture: str | None = None) -> Facts:
    """The facts of a Checkpoint (``adapter``: modelport.lora's summary, when it is one;
    ``architecture``: the transformers class ``modelport.recognize`` verified for its weights,
    else config.json's ``architectures`` is used)."""
    dt: Counter[str] = Counter()
    quant = None
    for t in ck.weights.values():
        dt[t.dtype.name] += t.nbytes
        if quant is None and (t.quant is not None or t.dtype.kind == "q"):
            quant = f"{t.dtype.name} tensors"
    meta = ck.metadata if isinstance(ck.metadata, dict) else {}
    cfg = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    qc = cfg.get("quantization_config") if isinstance(cfg, dict) else None
    if quant is None and isinstance(qc, dict):
        quant = f"quantization_config: {qc.get('quant_method', 'quantized')}"
    optimizer = any(k in meta for k in _OPTIMIZER_KEYS) or any(
        name.split(".")[0] in _OPTIMIZER_KEYS for name in ck.other_tensors)
    step = next((f"{k}={meta[k]}" for k in _STEP_KEYS
                 if isinstance(meta.get(k), int) and not isinstance(meta.get(k), bool)), None)
    # transformers' Trainer saves checkpoint-N/ with the model files plus these
    trainer = os.path.isdir(ck.path) and all(
        os.path.isfile(os.path.join(ck.path, n)) for n in ("optimizer.pt", "trainer_state.json"))
    if trainer and step is None:
        try:
            with open(os.path.join(ck.path, "trainer_state.json"), encoding="utf-8") as fh:
                state = json.load(fh)
            if isinstance(state, dict) and isinstance(state.get("global_step"), int):
                step = f"global_step={state['global_step']}"
        except (OSError, ValueError, RecursionError):
            pass
    cls = None
    if ck.kind == "full-model":
        from .classify import select

        try:
            cls = getattr(select(ck.tree, ck.weights_path or ""), "cls", None)
        except (KeyError, IndexError, TypeError):
            cls = None
    return Facts(
        path=ck.path, format=ck.format, family=_family(ck.format), kind=ck.kind,
        parameters=ck.parameters, dtypes=dict(dt), quantized=quant, optimizer=optimizer,
        step=step, lightning="pytorch-lightning_version" in meta, model_class=cls,
        architecture=_architecture(ck) or architecture,
        custom_code=isinstance(cfg, dict) and isinstance(cfg.get("auto_map"), dict),
        adapter=adapter, weights_path=ck.weights_path, trainer=trainer,
    )


def route(f: Facts) -> Route:
    return ROUTES.get(f.format) or ROUTES.get(f.family) or _DEFAULT


# -- the answers ---------------------------------------------------------------------------------


def _share(f: Facts, names: frozenset[str] | set[str]) -> float:
    total = sum(f.dtypes.values())
    return sum(n for d, n in f.dtypes.items() if d in names) / total if total else 0.0


def _pickled(f: Facts) -> bool:
    """A whole model that torch.load rebuilds by unpickling (Keras and TFLite whole models are
    rebuilt by their own frameworks from a config or graph, and take their route's loader)."""
    return f.kind == "full-model" and f.family == "pytorch"


def _load_how(f: Facts) -> str:
    r = route(f)
    if f.format == "hf-repo":
        trust = ", trust_remote_code=True" if f.custom_code else ""
        return (f"model = transformers.{auto_class(f.architecture)}.from_pretrained("
                f"{f.path!r}{trust})")
    if _pickled(f):
        return (f"model = torch.load({f.path!r}, weights_only=False)  # runs the pickle; needs "
                f"`{f.model_class}` importable")
    sub = f"[{f.weights_path!r}]" if f.weights_path else ""
    load = r.whole if f.kind == "full-model" and r.whole else r.load
    code = load.format(path=f.path, sub=sub)
    if f.architecture:  # recognised: transformers builds the model (config: inspect's architecture)
        code = code.replace("YourModel()", f"transformers.{auto_class(f.architecture)}"
                            ".from_config(config)")
    return code


def _inference(f: Facts) -> Answer:
    r = route(f)
    if f.adapter is not None:
        base = f.adapter.get("base_model") or "BASE"
        return Answer(AFTER, "a LoRA adapter holds only low-rank updates: it runs on top of its "
                      f"base model ({base})",
                      f"modelport merge-lora {base} {f.path} merged/  # or "
                      f"PeftModel.from_pretrained(base_model, {f.path!r})")
    if not f.parameters and not r.graph:
        return Answer(NO, f"no weights found in this {f.format} file ({f.kind})")
    if _pickled(f):
        return Answer(YES, f"a whole pickled model: torch.load rebuilds it, which needs the class "
                      f"`{f.model_class}` importable and runs the pickle (scan it first)",
                      _load_how(f))
    if f.kind == "full-model" and not r.graph:
        return Answer(YES, f"a whole {f.format} model (config and weights): its framework "
                      "rebuilds it from the config (scan it first: configs name code)",
                      _load_how(f))
    if f.kind in ("onnx-graph", "torchscript") or r.graph:
        return Answer(YES, f"{f.format}: the graph and its weights together, ready to run",
                      _load_how(f))
    if f.format == "hf-repo":
        arch = f.architecture or "the class config.json names"
        code = " with the folder's own code (trust_remote_code)" if f.custom_code else ""
        return Answer(YES, f"a Hugging Face folder for {arch}{code}", _load_how(f))
    if f.architecture:
        return Answer(YES, f"weights of a recognised architecture ({f.architecture}): "
                      "transformers builds the model from its config", _load_how(f))
    return Answer(YES, "weights only: the model's code (a class whose parameter names match) "
                  "runs them", _load_how(f))


def _trainable(f: Facts) -> tuple[str, str] | None:
    """(answer, why) when the dtypes stand in the way of training, else None."""
    if f.quantized:
        return AFTER, f"the weights are quantized ({f.quantized}): gradients need them " \
            "dequantized to F32/BF16 first"
    share = _share(f, TRAINING_FLOATS)  # dtypes a trainer updates as they are
    if share >= 0.5:
        return None
    fp8 = _share(f, {d for d in f.dtypes if d.startswith("F8")})
    if fp8 and share + fp8 >= 0.5:
        return AFTER, "the weights are fp8, which optimizers do not update directly: cast to BF16"
    return NO, "the weights are not floating point (" + ", ".join(sorted(f.dtypes)) + ")"


def _fine_tune(f: Facts, lora: bool = False) -> Answer:
    r = route(f)
    if f.adapter is not None:
        base = f.adapter.get("base_model") or "BASE"
        if lora:
            return Answer(YES, f"it is a LoRA adapter (rank {f.adapter.get('rank')}); training "
                          "it further needs its base model",
                          f"PeftModel.from_pretrained(base_model, {f.path!r}, is_trainable=True)"
                          f"  # base_model: {base}")
        return Answer(AFTER, "a LoRA adapter: full fine-tuning needs it merged into its base",
                      f"modelport merge-lora {base} {f.path} merged/")
    if not f.parameters:
        return Answer(NO, f"no weights found in this {f.format} file ({f.kind})")
    blocked = _trainable(f)
    if r.graph:
        return Answer(AFTER, f"{f.format} is an inference graph: trainers need the model in a "
                      "framework; its weights can be extracted and loaded into the matching "
                      "model class", r.extract.format(path=f.path))
    if blocked is not None:
        answer, why = blocked
        if answer == NO:
            return Answer(NO, why)
        if f.quantized and f.quantized.startswith("quantization_config") and lora:
            return Answer(YES, f"quantized weights ({f.quantized}): QLoRA trains an adapter on "
                          "them as they are",
                          f"{_load_how(f)}\n{r.lora}")
        how = (f"modelport convert {f.path} out/ --dtype BF16" if not f.quantized
               else r.dequantize.format(path=f.path))
        return Answer(AFTER, why, how)
    if not r.trainable:  # an inference-only container (llama.cpp): into a framework first
        return Answer(AFTER, f"{f.format} files are loaded by inference runtimes; training "
                      "needs the weights in a framework first", r.dequantize.format(path=f.path)
                      if f.family == "llama.cpp" else r.extract.format(path=f.path))
    if _pickled(f):
        what = ("a whole pickled model: trainable once torch.load rebuilds it (needs "
                f"`{f.model_class}` importable)")
    elif f.kind == "full-model":
        what = f"a whole {f.format} model: trainable once its framework rebuilds it"
    elif f.kind == "torchscript":
        what = "TorchScript parameters are trainable in place"
    elif f.format == "hf-repo" or f.architecture:
        what = f"trainable weights ({_dtypes(f)}) of {f.architecture or 'a transformers model'}"
    else:
        what = f"trainable weights ({_dtypes(f)}); the model's code is needed to train them"
    if lora:
        how = f"{_load_how(f)}\n{r.lora}"
        return Answer(YES, what.replace("trainable weights", "weights") + "; LoRA freezes them "
                      "and trains low-rank adapters on the linear layers", how)
    return Answer(YES, what, f"{_load_how(f)}\n{r.train}")


def _dtypes(f: Facts) -> str:
    total = sum(f.dtypes.values()) or 1
    return ", ".join(f"{d} {n / total:.0%}" for d, n in
                     sorted(f.dtypes.items(), key=lambda kv: -kv[1]))


def _resume(f: Facts) -> Answer:
    if f.trainer:
        return Answer(YES, f"a transformers Trainer checkpoint folder: weights, optimizer and "
                      f"scheduler state{f' and {f.step}' if f.step else ''}",
                      f"trainer.train(resume_from_checkpoint={f.path!r})")
    how = route(f).resume.format(path=f.path)
    if f.lightning:
        how = f"trainer.fit(model, ckpt_path={f.path!r})  # Lightning restores everything"
    if f.optimizer and f.step:
        return Answer(YES, f"a training checkpoint: weights, optimizer state and {f.step}", how)
    if f.optimizer:
        return Answer(YES, "weights and optimizer state (no step counter: the schedule restarts "
                      "unless you know where it stopped)", how)
    if f.parameters and f.kind != "training-checkpoint" or f.adapter is not None:
        why = ("no optimizer state or step: training can start again from these weights "
               "(fine-tune) but the run that wrote them cannot be resumed")
        return Answer(NO, why)
    return Answer(NO, "no optimizer state in this file")


def answers(f: Facts) -> dict[str, Answer]:
    return {"inference": _inference(f), "fine_tune": _fine_tune(f),
            "lora": _fine_tune(f, lora=True), "resume_training": _resume(f)}


def can(ck: Checkpoint, adapter: dict[str, Any] | None = None,
        architecture: str | None = None) -> dict[str, dict[str, Any]]:
    """The ``inspect --json`` ``can`` object."""
    return {q: a.json() for q, a in answers(facts(ck, adapter, architecture)).items()}


# -- the human view ------------------------------------------------------------------------------

_LABELS = {"inference": "inference", "fine_tune": "fine-tune", "lora": "LoRA",
           "resume_training": "resume"}


def render_usage(usage: dict[str, Any]) -> list[str]:
    """``inspect``'s text lines for ``can`` and ``lora`` (and a folder's ``files``)."""
    lines: list[str] = []
    ad = usage.get("lora")
    if ad:
        lines.append("\nLoRA adapter:")
        lines.append(f"  style {ad.get('style')}, rank {ad.get('rank')}, alpha {ad.get('alpha')}"
                     f"{', rsLoRA' if ad.get('use_rslora') else ''}"
                     f"{', DoRA' if ad.get('use_dora') else ''}"
                     f"{', fan_in_fan_out' if ad.get('fan_in_fan_out') else ''}; "
                     f"{ad.get('modules')} modules, {ad.get('parameters'):,} parameters")
        targets = ad.get("target_modules")
        if targets:
            shown = targets if isinstance(targets, str) else ", ".join(map(str, targets))
            lines.append(f"  targets {shown}")
        lines.append(f"  base model {ad.get('base_model') or '(not recorded)'}")
    files = usage.get("files")
    if files:
        lines.append("\nfiles:")
        for f in files:
            code = "  [runs code]" if f.get("needs_code") else ""
            lines.append(f"  {f['path']:<36} {f['role']}{code}")
            for note in f.get("notes") or []:
                lines.append(f"  {'':<36}   {note}")
        folder = usage.get("folder") or {}
        if folder.get("loads"):
            lines.append(f"  note: {folder['loads']}")
        for m in folder.get("missing") or []:
            lines.append(f"  missing: {m}")
    answers_ = usage.get("can") or {}
    if answers_:
        lines.append("\nwhat it is good for:")
        for q, a in answers_.items():
            lines.append(f"  {_LABELS.get(q, q):<10} {a['answer']}: {a['why']}")
            for code in (a.get("how") or "").splitlines():
                lines.append(f"  {'':<10}   {code}")
    return lines
