"""The peers' own regression corpus: every sample picklescan, modelscan and modelaudit ship
with their tests (``peers/``, licences in ``peers/NOTICE.md``), and fickling's and modelscan's
generated techniques rebuilt here as bytes. Every malicious sample a loader would act on makes
``modelport scan`` exit 1; benign samples exit 0. Nothing is loaded by anything but modelport.
"""

from __future__ import annotations

import importlib.util
import marshal
from pathlib import Path

import pytest

from modelport.cli import main

from .corpus import P

PEERS = Path(__file__).parent / "peers"

# Files whose expected exit is not 1 (everything else in peers/ is malicious: exit 1), and why.
CLEAN = {
    **dict.fromkeys(["picklescan/benign0_v0.pkl", "picklescan/benign0_v3.pkl",
                     "picklescan/benign0_v4.pkl", "picklescan/new_pytorch_model.bin",
                     "picklescan/int_array.npy", "picklescan/int_arrays.npz",
                     "picklescan/int_arrays_compressed.npz", "picklescan/object_array.npy",
                     "picklescan/object_arrays.npz", "picklescan/object_arrays_compressed.npz",
                     "modelaudit/safe_data.pkl", "modelaudit/safe_model.pt",
                     "modelaudit/safe_model.zip", "modelaudit/safe_model_with_binary.pkl",
                     "modelaudit/safe_model_with_encoding.pkl",
                     "modelaudit/safe_model_with_tokens.pkl",
                     "modelaudit/safe_nested_structure.pkl", "modelaudit/simple_nested.pkl"],
                    "benign (object arrays hold plain data)"),
    **dict.fromkeys(["picklescan/not_a_pickle.bin", "picklescan/bad_pytorch.pt"],
                    "no loader reads anything from it (text; a PNG header)"),
    # modelaudit flags these by content heuristics: a dict whose *values* are a pickle as
    # bytes, base64 or hex. pickle.load returns the strings; nothing decodes or runs them.
    **dict.fromkeys(["modelaudit/decode_exec_chain.pkl",
                     "modelaudit/malicious_model_realistic.pkl",
                     "modelaudit/nested_pickle_base64.pkl", "modelaudit/nested_pickle_hex.pkl",
                     "modelaudit/nested_pickle_multistage.pkl",
                     "modelaudit/nested_pickle_raw.pkl"],
                    "data: an encoded pickle stored as a value, which no loader decodes"),
}
# Benign to their peer, unsafe here by design: an encrypted member is content zipfile (with the
# password) and torch (ignoring the flag) read differently, so it is never clean (CVE-2025-1945).
NOT_CLEAN = {"picklescan/benign_password_protected.zip", "modelscan/password_protected.zip"}
# Pickles whose first opcode is not PROTO or a global (UNICODE, STRING): CPython runs them,
# and the scanner parses every file from byte 0 by CPython's rules (#7 item 2).
ANY_FIRST_OPCODE = {"picklescan/malicious11.pkl", "picklescan/malicious-invalid-bytes.pkl",
                    "picklescan/malicious23.pkl"}

SAMPLES = sorted(str(p.relative_to(PEERS)) for p in PEERS.rglob("*") if p.is_file() and
                 p.name != "NOTICE.md")


def _exit(path: Path) -> int:
    return main(["scan", str(path)])


def test_the_corpus_is_all_here() -> None:
    assert len(SAMPLES) > 140
    assert set(CLEAN) | NOT_CLEAN | ANY_FIRST_OPCODE <= set(SAMPLES)


@pytest.mark.parametrize("name", SAMPLES)
def test_peer_sample(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = _exit(PEERS / name)
    capsys.readouterr()
    if name in CLEAN:
        assert code == 0, CLEAN[name]
    elif name.endswith(".7z") and importlib.util.find_spec("py7zr") is None:
        assert code == 2  # without py7zr a 7z archive is "not scanned": never clean
    elif name in NOT_CLEAN:
        assert code != 0
    else:
        assert code == 1


# -- fickling's and modelscan's generated techniques, rebuilt from opcodes ----------------------


def _call(module: str, name: str, *args: bytes, proto: int = 4) -> bytes:
    return P.pickle(P.s(module), P.s(name), P.STACK_GLOBAL, P.MARK, *args, P.TUPLE, P.REDUCE,
                    proto=proto)


TECHNIQUES: dict[str, bytes] = {
    # fickling test_bypasses.py, one per advisory
    "GHSA-r7v6-mfhq-g3m2 pty.spawn": _call("pty", "spawn", P.s("id")),
    "GHSA-565g-hwwr-4pp3 marshal.loads + types.FunctionType": P.pickle(
        P.s("types"), P.s("FunctionType"), P.STACK_GLOBAL, P.MARK,
        P.s("marshal"), P.s("loads"), P.STACK_GLOBAL, P.MARK,
        P.b(marshal.dumps(compile("1", "<s>", "eval"))), P.TUPLE, P.REDUCE,
        P.EMPTY_DICT, P.TUPLE, P.REDUCE, P.EMPTY_TUPLE, P.REDUCE, proto=4),
    "GHSA-wfq2-52f7-7qvj runpy._run_code": _call("runpy", "_run_code", P.s("1"), P.EMPTY_DICT),
    "GHSA-p523-jq9w-64x9 cProfile.run": _call("cProfile", "run", P.s("1")),
    "GHSA-5hvc-6wx8-mvv4 ctypes.CDLL": _call("ctypes", "CDLL", P.s("libc.so.6")),
    "GHSA-5hvc-6wx8-mvv4 pydoc.locate": _call("pydoc", "locate", P.s("os.system")),
    "GHSA-q5qq-mvfm-j35x importlib.import_module": _call("importlib", "import_module",
                                                         P.s("os")),
    "GHSA-q5qq-mvfm-j35x code.InteractiveInterpreter.runsource": _call(
        "code", "InteractiveInterpreter.runsource", P.NONE, P.s("1")),
    "GHSA-q5qq-mvfm-j35x multiprocessing.util.spawnv_passfds": _call(
        "multiprocessing.util", "spawnv_passfds", P.b(b"/bin/sh"), P.EMPTY_LIST,
        P.EMPTY_TUPLE),
    "GHSA-h4rm-mm56-xf63 builtins.__import__ + getattr": P.pickle(
        P.glob("builtins", "getattr"), P.MARK, P.glob("builtins", "__import__"), P.MARK,
        P.s("os"), P.TUPLE, P.REDUCE, P.s("system"), P.TUPLE, P.REDUCE, proto=2),
    "GHSA-955r-x9j8-7rhh _operator.methodcaller": _call("_operator", "methodcaller",
                                                        P.s("system"), P.s("id")),
    "GHSA-m273-6v24-x4m4 distutils.file_util.write_file": _call(
        "distutils.file_util", "write_file", P.s("/tmp/x"), P.EMPTY_LIST),
    "io.FileIO": _call("io", "FileIO", P.s("/etc/passwd")),
    "GHSA-r8g5-cgf2-4m4m numpy.f2py.crackfortran.getlincoef": _call(
        "numpy.f2py.crackfortran", "getlincoef", P.s("x"), P.EMPTY_DICT),
    **{f"network SSRF {m}.{c}": _call(m, c, P.s("127.0.0.1"), P.i(port)) for m, c, port in (
        ("smtplib", "SMTP", 25), ("imaplib", "IMAP4", 143), ("ftplib", "FTP", 21),
        ("poplib", "POP3", 110), ("telnetlib", "Telnet", 23), ("nntplib", "NNTP", 119))},
    "GHSA-f7qq-56ww-84cr asyncio subprocess": _call(
        "asyncio.unix_events", "_UnixSubprocessTransport._start", P.NONE, P.s("id")),
    "GHSA-mxhj-88fx-4pcv OBJ then POP": P.pickle(
        P.MARK, P.s("smtplib"), P.s("SMTP"), P.STACK_GLOBAL, P.s("127.0.0.1"), P.OBJ, P.POP,
        P.NONE, proto=4),
    "GHSA-5hwf-rc88-82xm uuid._get_command_stdout": _call("uuid", "_get_command_stdout",
                                                          P.s("id")),
    "GHSA-5hwf-rc88-82xm _aix_support._read_cmd_output": _call(
        "_aix_support", "_read_cmd_output", P.s("id")),
    "GHSA-5hwf-rc88-82xm _osx_support._read_output": _call("_osx_support", "_read_output",
                                                           P.s("id")),
    "GHSA-5j3x-jp52-966f dotted name through pathlib": _call("pathlib", "os.system",
                                                             P.s("id")),
    **{f"GHSA-cffv-grgg-g429 {m}.create": _call(m, "create")
       for m in ("_interpreters", "_xxsubinterpreters")},
    # modelscan tests/test_modelscan.py generated samples not in the files above
    "modelscan malicious13: builtins.eval.__call__": P.pickle(
        P.glob("builtins", "eval.__call__"), P.MARK, P.s("1"), P.TUPLE, P.REDUCE, proto=5),
    "modelscan malicious14: stacked pickle.loads of a second pickle": P.pickle(
        P.glob("pickle", "loads"), P.MARK,
        P.b(_call("os", "system", P.s("id"))), P.TUPLE, P.REDUCE, P.POP, P.NONE, proto=4),
}


@pytest.mark.parametrize("technique", sorted(TECHNIQUES))
def test_generated_technique(technique: str, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(TECHNIQUES[technique])
    assert _exit(path) == 1
    capsys.readouterr()
