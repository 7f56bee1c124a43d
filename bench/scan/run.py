"""``modelport scan`` against picklescan, modelscan and fickling: what each one catches, what
each one flags that is benign, and how long each takes on a 2 GB file and a folder of 100 files.

    .venv/bin/python bench/scan/run.py                 # writes the "## scan" section of
                                                       # bench/README.md
    .venv/bin/python bench/scan/run.py --no-timing     # detection tables only

The malicious corpus is tests/security/corpus.py (one sample per technique, every payload
aimed at a canary file); the benign corpus is tests/fixtures/generate.py plus what training
code writes (Lightning hyper-parameters, training_args.bin, RNG and optimizer state). Every
tool runs through its Python API in a child process (one per tool), each sample under a
60-second alarm. No tool executes a sample (all four are static); the run fails if the canary
ever appears. The big files go to bench/data/ (gitignored) and are removed afterwards.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from measure import measure, write_section  # noqa: E402  (bench/measure.py: shared helpers)

TOOLS = ["modelport", "picklescan", "picklescan --strict", "modelscan", "fickling"]

# One child per tool: reads paths on stdin, prints {path: [verdict, note]}; verdicts are
# flagged / clean / error / skipped (the tool looked at nothing in the file).
DRIVER = r'''
import json, os, signal, sys, warnings, zipfile
warnings.simplefilter("ignore")
tool = sys.argv[1]
paths = json.loads(sys.stdin.read())

def files(p):
    if os.path.isdir(p):
        return [os.path.join(d, f) for d, _, fs in os.walk(p) for f in sorted(fs)]
    return [p]

def modelport(p):
    from modelport.scan import scan_file
    r = scan_file(p)
    # needs-code (a class off the allowlist: loading imports its module) exits 1 like unsafe
    return {"unsafe": "flagged", "needs-code": "flagged", "clean": "clean",
            "error": "error"}[r.verdict], r.reason

def picklescan(p, strict=False):
    from picklescan.scanner import scan_directory_path, scan_file_path
    r = scan_directory_path(p) if os.path.isdir(p) else scan_file_path(p)
    sus = [f"{g.module}.{g.name}" for g in r.globals if g.safety.value != "innocuous"]
    if r.infected_files or (strict and sus):
        return "flagged", ", ".join(sus[:3])
    if r.scan_err:
        return "error", "scan error"
    return ("clean" if r.scanned_files else "skipped"), ""

def modelscan(p):
    from modelscan.modelscan import ModelScan
    ms = ModelScan()
    ms.scan(p)
    if ms.issues.all_issues:
        return "flagged", str(ms.issues.all_issues[0].details.output_json().get("operator"))
    if ms.errors:
        return "error", str(ms.errors[0].to_dict().get("description", ""))[:80]
    return ("clean" if ms.scanned else "skipped"), ""

def fickling(p):
    # fickling's documented scanners: loader.scan_zip_archive for zip archives (its .pkl/.bin
    # members), loader.scan_file for everything else.
    from fickling.loader import scan_file, scan_zip_archive
    results = []
    # In a folder, only the files fickling's own zip scanner would pick (pickle extensions).
    picked = files(p) if not os.path.isdir(p) else [
        f for f in files(p) if f.endswith((".pkl", ".pickle", ".bin", ".pt", ".pth", ".ckpt"))]
    for f in picked:
        if zipfile.is_zipfile(f):
            results += list(scan_zip_archive(f, graceful=True).values())
        else:
            results.append(scan_file(f, graceful=True))
    if not results:
        return "skipped", ""
    bad = [r for r in results if not r.is_safe]
    if bad and all(r.errors and not r.results for r in bad):
        return "unparsed", bad[0].errors[0][:80]  # graded unsafe only because it cannot parse
    if bad:
        return "flagged", bad[0].severity.name
    return "clean", ""

def alarm(*_):
    raise TimeoutError("over 60 s")

signal.signal(signal.SIGALRM, alarm)
fn = {"modelport": modelport, "picklescan": picklescan, "modelscan": modelscan,
      "fickling": fickling, "picklescan --strict": lambda p: picklescan(p, True)}[tool]
out = {}
for p in paths:
    signal.alarm(60)
    try:
        out[p] = list(fn(p))
    except BaseException as e:
        out[p] = ["error", f"{type(e).__name__}: {str(e)[:80]}"]
    finally:
        signal.alarm(0)
print("@@JSON@@" + json.dumps(out))
'''


def _load(name: str, path: Path):  # noqa: ANN202 - a module
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# Benign objects that training code writes next to weights (the tests build the same ones).
BENIGN_EXTRAS = r'''
import argparse, pickle, sys, warnings
import numpy as np, torch
warnings.simplefilter("ignore")
out = sys.argv[1]
from lightning.fabric.utilities.data import AttributeDict
torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": AttributeDict(lr=0.1,
            args=argparse.Namespace(layers=2)), "hparams_name": "kwargs", "epoch": 1},
           f"{out}/lightning_hparams.ckpt")
import transformers.training_args as ta
try:
    args = ta.TrainingArguments(output_dir=f"{out}/ta")
except ImportError:  # no accelerate: skip the device set-up, the pickled fields are the same
    ta.is_torch_available = lambda: False
    args = ta.TrainingArguments(output_dir=f"{out}/ta")
torch.save(args, f"{out}/training_args.bin")
torch.save({"np": np.random.get_state(), "gen": np.random.default_rng(0),
            "bitgen": np.random.default_rng(1).bit_generator.state,
            "torch": torch.get_rng_state()}, f"{out}/rng_state.pt")
p = [torch.nn.Parameter(torch.randn(4, 4))]
opt = torch.optim.AdamW(p, lr=1e-3); p[0].sum().backward(); opt.step()
torch.save({"optimizer": opt.state_dict(),
            "scheduler": torch.optim.lr_scheduler.StepLR(opt, 2).state_dict()},
           f"{out}/optimizer.pt")
with open(f"{out}/arrays.pkl", "wb") as f:
    pickle.dump({"x": np.arange(4.0), "s": np.float32(1)}, f, protocol=4)
'''


def build_corpora(tmp: Path) -> tuple[dict[str, Path], dict[str, Path], Path, list]:
    canary = tmp / "CANARY"
    corpus = _load("modelport_security_corpus", ROOT / "tests" / "security" / "corpus.py")
    malicious = corpus.build_all(tmp / "malicious", str(canary))
    gen = _load("modelport_fixture_generate", ROOT / "tests" / "fixtures" / "generate.py")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        benign = {k: v for k, v in gen.generate_all(tmp / "benign").items()}
    extras = tmp / "benign-extras"
    extras.mkdir()
    subprocess.run([sys.executable, "-c", BENIGN_EXTRAS, str(extras)], check=True,
                   capture_output=True)
    benign |= {p.name: p for p in sorted(extras.iterdir()) if p.is_file()}
    return malicious, benign, canary, corpus.SAMPLES


def run_tool(tool: str, paths: list[Path]) -> dict[str, list[str]]:
    proc = subprocess.run([sys.executable, "-c", DRIVER, tool], input=json.dumps(
        [str(p) for p in paths]), capture_output=True, text=True, timeout=3600)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("@@JSON@@")), None)
    if line is None:
        raise RuntimeError(f"{tool} driver failed: {proc.stderr[-2000:]}")
    return json.loads(line[len("@@JSON@@"):])


MARK = {"flagged": "caught", "clean": "**missed**", "error": "error", "skipped": "**skipped**",
        "unparsed": "unparsed"}
BENIGN_MARK = {"flagged": "**false alarm**", "clean": "clean", "error": "error",
               "skipped": "skipped", "unparsed": "**unparsed**"}


def detection(malicious: dict[str, Path], benign: dict[str, Path], samples: list,
              canary: Path) -> list[str]:
    results = {}
    for tool in TOOLS:
        t0 = time.perf_counter()
        results[tool] = run_tool(tool, list(malicious.values()) + list(benign.values()))
        print(f"{tool}: {time.perf_counter() - t0:.1f}s", flush=True)
        if canary.exists():
            raise SystemExit(f"the canary exists after {tool}: a payload ran")
    by_name = {s.name: s for s in samples}
    lines = ["### Detection summary", "",
             f"{len(malicious)} malicious samples (one per technique) and {len(benign)} "
             "benign files written by the real libraries.", "",
             "| tool | malicious caught | missed | unparsed | error | skipped | "
             "benign false alarms | benign unparsed | benign errors |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for tool in TOOLS:
        mal = [results[tool][str(p)][0] for p in malicious.values()]
        ben = [results[tool][str(p)][0] for p in benign.values()]
        lines.append(f"| {tool} | {mal.count('flagged')}/{len(mal)} | {mal.count('clean')} | "
                     f"{mal.count('unparsed')} | {mal.count('error')} | {mal.count('skipped')} | "
                     f"{ben.count('flagged')}/{len(ben)} | {ben.count('unparsed')} | "
                     f"{ben.count('error')} |")
    lines += ["", "caught: the tool reports the file unsafe because of what it found in it; "
              "missed: it reports the file clean; unparsed: it cannot parse the file and grades "
              "it unsafe for that alone (fickling, which has no format detection); error: it "
              "fails on the file without a verdict; skipped: it scans nothing in the file "
              "(it decides by extension). `picklescan --strict` also counts its \"suspicious\" "
              "(unknown) globals. Each tool gets the path as a user would give it (a Hugging "
              "Face folder is one path). modelport's one benign flag is `full_model.pt`, "
              "`torch.save(model)` of a class defined in the training script: torch.load "
              "imports that script's module (its code runs) and weights_only=True refuses the "
              "file; modelport says `needs-code` (exit 1; `--allow` vouches for the classes), names "
              "those two classes and nothing else (torch.nn layers are reported as ecosystem "
              "objects). Its `needs-code` verdicts count as flagged here.", "",
              "### Malicious samples", "",
              "| sample | technique | advisory | " + " | ".join(TOOLS) + " |",
              "| --- | --- | --- | " + " | ".join("---" for _ in TOOLS) + " |"]
    for name, path in malicious.items():
        s = by_name[name]
        cells = [MARK[results[t][str(path)][0]] for t in TOOLS]
        lines.append(f"| `{name}` | {s.technique} | {s.advisory} | " + " | ".join(cells) + " |")
    lines += ["", "### Benign files", "", "| file | " + " | ".join(TOOLS) + " |",
              "| --- | " + " | ".join("---" for _ in TOOLS) + " |"]
    for path in benign.values():
        cells = [BENIGN_MARK[results[t][str(path)][0]] for t in TOOLS]
        label = f"`{path.name}`" + ("/ (folder)" if path.is_dir() else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


JOBS = {
    "empty interpreter (baseline)": "pass",
    "modelport scan": ("import io, contextlib\nfrom modelport.cli import main\n"
                       "import modelport.cli.scan, modelport.scan.archives\nFILE_READ = rchar()\n"
                       "with contextlib.redirect_stdout(io.StringIO()): main(['scan', P])"),
    "picklescan": ("from picklescan.scanner import scan_directory_path, scan_file_path\n"
                   "import os\nFILE_READ = rchar()\n"
                   "(scan_directory_path if os.path.isdir(P) else scan_file_path)(P)"),
    "modelscan": ("import warnings; warnings.simplefilter('ignore')\n"
                  "from modelscan.modelscan import ModelScan\nms = ModelScan()\n"
                  "FILE_READ = rchar()\nms.scan(P)"),
    "fickling": ("import os, zipfile\nfrom fickling.loader import scan_file, scan_zip_archive\n"
                 "FILE_READ = rchar()\n"
                 "fs = [os.path.join(d, f) for d, _, n in os.walk(P) for f in n] "
                 "if os.path.isdir(P) else [P]\n"
                 "for f in fs:\n"
                 "    scan_zip_archive(f, graceful=True) if zipfile.is_zipfile(f) "
                 "else scan_file(f, graceful=True)"),
}


def peer_corpus() -> list[str]:
    """The peers' own test samples (tests/security/peers/, classified in
    test_containers_peers.py): malicious ones a loader acts on, benign ones, each tool."""
    peers = ROOT / "tests" / "security" / "peers"
    text = (ROOT / "tests" / "security" / "test_containers_peers.py").read_text()
    import ast

    tree = ast.parse(text)
    sets: dict[str, set[str]] = {}
    for node in tree.body:  # the tables are literals: read them without importing the tests
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and \
                node.targets[0].id in ("CLEAN", "NOT_CLEAN"):
            sets[node.targets[0].id] = {c.value for c in ast.walk(node.value)
                                        if isinstance(c, ast.Constant) and
                                        isinstance(c.value, str) and "/" in c.value}
    files = sorted(p for p in peers.rglob("*") if p.is_file() and p.name != "NOTICE.md")
    benign = [p for p in files if str(p.relative_to(peers)) in sets["CLEAN"]]
    unreadable = [p for p in files if str(p.relative_to(peers)) in sets["NOT_CLEAN"]]
    malicious = [p for p in files if p not in benign and p not in unreadable]
    lines = ["### The peers' own test samples", "",
             f"tests/security/peers/: the files picklescan, modelscan and modelaudit ship with "
             f"their tests ({len(malicious)} malicious that a loader acts on, {len(benign)} "
             f"benign, {len(unreadable)} benign but encrypted; the classification is "
             "test_containers_peers.py's, licences in peers/NOTICE.md).", "",
             "| tool | malicious caught | missed | error | skipped | benign false alarms |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    missed: dict[str, list[str]] = {}
    for tool in TOOLS:
        res = run_tool(tool, malicious + benign)
        mal = [res[str(p)][0] for p in malicious]
        ben = [res[str(p)][0] for p in benign]
        missed[tool] = [p.name for p in malicious if res[str(p)][0] == "clean"]
        lines.append(f"| {tool} | {mal.count('flagged')}/{len(mal)} | {mal.count('clean')} | "
                     f"{mal.count('error') + mal.count('unparsed')} | {mal.count('skipped')} | "
                     f"{ben.count('flagged')}/{len(ben)} |")
    lines += ["", "modelport misses: " + (", ".join(f"`{m}`" for m in missed["modelport"])
                                          or "none"), ""]
    return lines


def build_folder(folder: Path) -> None:
    """100 files of the kinds a model folder holds: torch zips (state dicts, training
    checkpoints), legacy torch files, safetensors, npz."""
    code = r'''
import sys, numpy as np, torch
from safetensors.torch import save_file
out = sys.argv[1]
g = torch.Generator().manual_seed(0)
for i in range(100):
    sd = {f"layer.{j}.weight": torch.randn(128, 256, generator=g) for j in range(4)}
    sd |= {f"layer.{j}.bias": torch.randn(256, generator=g) for j in range(4)}
    kind = i % 10
    if kind < 5:
        torch.save(sd, f"{out}/model_{i:03}.pt")
    elif kind < 7:
        opt = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(128, 256)}},
               "param_groups": [{"lr": 1e-3, "params": [0]}]}
        torch.save({"epoch": i, "model_state_dict": sd, "optimizer_state_dict": opt},
                   f"{out}/checkpoint_{i:03}.ckpt")
    elif kind == 7:
        torch.save(sd, f"{out}/legacy_{i:03}.pth", _use_new_zipfile_serialization=False)
    elif kind == 8:
        save_file(sd, f"{out}/model_{i:03}.safetensors")
    else:
        np.savez(f"{out}/arrays_{i:03}.npz", **{k: v.numpy() for k, v in sd.items()})
'''
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True)


def timing(big: Path, folder: Path) -> list[str]:
    lines: list[str] = []
    for label, path in ((f"{big.stat().st_size / 1e9:.2f} GB torch.save state_dict (GPT-style, "
                         "one tied weight)", big),
                        (f"a folder of {len(list(folder.iterdir()))} model files "
                         f"({sum(p.stat().st_size for p in folder.iterdir()) / 1e6:.0f} MB: "
                         "torch zips, training checkpoints, legacy, safetensors, npz)", folder)):
        subprocess.run(["cat", *([str(path)] if path.is_file() else
                                 [str(p) for p in sorted(path.iterdir())])],
                       stdout=subprocess.DEVNULL, check=True)  # in the page cache for everyone
        rows = []
        for name, code in JOBS.items():
            best = min((measure(code, str(path)) for _ in range(5)), key=lambda r: r["seconds"])
            rows.append((name, best))
            print(label[:30], name, round(best["seconds"], 3), flush=True)
        base = rows[0][1]["seconds"]
        ps = dict(rows)["picklescan"]["seconds"] - base
        lines += [f"#### {label}", "", "| tool | wall s | s minus start-up | vs picklescan | "
                  "peak RSS MiB | bytes read after imports |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for name, r in rows:
            net = r["seconds"] - base
            ratio = f"{net / ps:.2f}x" if name != rows[0][0] and ps > 0 else ""
            read = "" if r["after_imports"] is None else format(r["after_imports"], ",")
            lines.append(f"| {name} | {r['seconds']:.3f} | {net:.3f} | {ratio} | "
                         f"{r['maxrss_kb'] / 1024:.0f} | {read} |")
        lines.append("")
    return lines


def _python() -> str:
    """The interpreter as the README's commands spell it (the project's .venv)."""
    exe = Path(sys.executable)
    return f".venv/bin/{exe.name}" if exe.parent.parent.name == ".venv" else str(exe)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-timing", action="store_true", help="detection tables only")
    ap.add_argument("--keep-data", action="store_true", help="keep bench/data/scan-* files")
    args = ap.parse_args()
    versions = {}
    for mod in ("picklescan", "modelscan", "fickling", "torch", "modelport"):
        from importlib.metadata import version

        versions[mod] = version(mod)
    tmp = Path(tempfile.mkdtemp(prefix="modelport-scan-bench-"))
    big, folder = BENCH / "data" / "scan-2.1g.pt", BENCH / "data" / "scan-folder100"
    try:
        malicious, benign, canary, samples = build_corpora(tmp)
        lines = ["## scan", "",
                 f"`{_python()} bench/scan/run.py` on "
                 f"{platform.machine()}, {os.cpu_count()} cores, Python "
                 f"{platform.python_version()}; "
                 + ", ".join(f"{k} {v}" for k, v in versions.items()) + ". Every payload "
                 "targets a canary file; it never appeared.", ""]
        lines += detection(malicious, benign, samples, canary)
        lines += ["", *peer_corpus()]
        if not args.no_timing:
            from reference import ensure

            ensure(str(big), 2.1)
            build_folder(folder)
            lines += ["", "### Scan time", "",
                      "Best of 5 runs, each a fresh interpreter (bench/measure.py) calling the "
                      "tool's Python API; files in the page cache. `s minus start-up` subtracts "
                      "an empty interpreter; bytes read counts read()/pread() after the tool's "
                      "imports (`rchar`; mapped pages are not counted but show in RSS). "
                      "modelport reads each zip's directory (the last 64 KiB, where the "
                      "directory is searched for), the local headers, every pickle, the first "
                      "512 bytes of each tensor storage, and nothing else; its count also "
                      "includes modules it imports on first use.", ""]
            lines += timing(big, folder)
        if canary.exists():
            raise SystemExit("the canary exists: a payload ran")
        write_section("scan", "\n".join(lines))
        print("\n".join(lines))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not args.keep_data:
            if big.exists():
                big.unlink()
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
