"""The TensorFlow op policy: which graph ops make a SavedModel or ``.meta`` graph unsafe, and why.

A graph runs when it is loaded and served (``tf.saved_model.load`` runs its restore and init
functions; serving runs its signatures), so the scanner judges every node of the graph and of
every function in its library. Ops are allowed when TensorFlow itself registers them
(``formats/tf_opset.py``, generated from TF) and this table does not flag them. The table is
data: one entry per op, with its severity, rule and reason.

Checkpoint I/O (``SaveV2``, ``RestoreV2``, ``MergeV2Checkpoints``, ...) is in every SavedModel:
its saver functions write and read the variables at a path the *caller* passes. Those ops are
allowed when their path input depends on a function argument or placeholder, and flagged when
the path is built from constants alone (a graph that writes a fixed file when it runs).
"""

from __future__ import annotations

from .findings import Severity

__all__ = ["FLAGGED", "PATH_OPS", "PYTHON", "FILE_IO", "NETWORK", "CUSTOM_WHY"]

S = Severity

FILE_IO = ("reads or writes files on the machine that loads or serves the model", "tf-file-op")
PYTHON = ("calls a Python function registered in the loading process (tf.py_function / "
          "tf.numpy_function): outside that process loading fails, inside it runs arbitrary "
          "Python", "tf-py-func")
NETWORK = ("opens network connections from the serving process", "tf-network-op")
_DATASET_FILES = ("a dataset that reads or writes files when the graph runs", "tf-file-op")
_SUMMARY = ("writes event files (TensorBoard summaries) to a path when the graph runs",
            "tf-file-op")
_DEBUG = ("debug ops send tensors to the URLs in their attributes (file:// or grpc://)",
          "tf-debug-op")
CUSTOM_WHY = ("not an op TensorFlow registers: native code from a library the loading process "
              "must load (tf.load_op_library)")

# op -> (severity, (why, rule))
FLAGGED: dict[str, tuple[Severity, tuple[str, str]]] = {}
for _ops, _sev, _why in (
    (("ReadFile", "WriteFile", "MatchingFiles", "ImmutableConst", "FileSystemSetConfiguration",
      "WholeFileReader", "WholeFileReaderV2", "TextLineReader", "TextLineReaderV2",
      "TFRecordReader", "TFRecordReaderV2", "FixedLengthRecordReader",
      "FixedLengthRecordReaderV2", "LMDBReader", "LoadAndRemapMatrix", "RecordInput"),
     S.HIGH, FILE_IO),
    (("PyFunc", "PyFuncStateless", "EagerPyFunc"), S.HIGH, PYTHON),
    (("GeneratorDataset",), S.MEDIUM, ("a dataset fed by a Python generator (tf.py_function "
                                       "underneath)", "tf-py-func")),
    (("TFRecordDataset", "TFRecordDatasetV2", "TextLineDataset", "FixedLengthRecordDataset",
      "FixedLengthRecordDatasetV2", "CSVDataset", "CSVDatasetV2", "ExperimentalCSVDataset",
      "LMDBDataset", "ExperimentalLMDBDataset", "SqlDataset", "ExperimentalSqlDataset",
      "MatchingFilesDataset", "ExperimentalMatchingFilesDataset", "SaveDataset",
      "SaveDatasetV2", "LoadDataset", "DatasetToTFRecord", "ExperimentalDatasetToTFRecord",
      "SnapshotDataset", "SnapshotDatasetV2", "SnapshotDatasetReader",
      "SnapshotNestedDatasetReader", "SnapshotChunkDataset", "ListSnapshotChunksDataset",
      "DistributedSave", "CacheDatasetV2"), S.HIGH, _DATASET_FILES),
    (("CreateSummaryFileWriter", "CreateSummaryDbWriter", "SummaryWriter"), S.HIGH, _SUMMARY),
    (("DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "DebugNanCount",
      "DebugNumericSummary", "DebugNumericSummaryV2"), S.HIGH, _DEBUG),
    (("RpcClient", "RpcServer", "RpcServerRegister", "RpcServerStart", "RpcCall",
      "DataServiceDataset", "DataServiceDatasetV2", "DataServiceDatasetV3",
      "DataServiceDatasetV4", "RegisterDataset", "RegisterDatasetV2"), S.HIGH, NETWORK),
):
    for _op in _ops:
        FLAGGED[_op] = (_sev, _why)

# Ops that take a checkpoint or vocabulary path: op -> indices of their path inputs. Allowed
# when every path input depends on an argument/placeholder, flagged when it is constant.
PATH_OPS: dict[str, tuple[int, ...]] = {
    "Save": (0,), "SaveV2": (0,), "SaveSlices": (0,), "Restore": (0,), "RestoreV2": (0,),
    "RestoreSlice": (0,), "MergeV2Checkpoints": (0, 1), "ShardedFilename": (0,),
    "ShardedFilespec": (0,), "DTensorRestoreV2": (0,), "InitializeTableFromTextFile": (1,),
    "InitializeTableFromTextFileV2": (1,), "CacheDataset": (1,),
}
CONSTANT_PATH_WHY = ("checkpoint or file I/O at a path fixed in the graph, not one the caller "
                     "passes: the graph reads or writes that file when it runs")
# PrintV2 prints to the stream its attribute names; "file://..." writes a file.
PRINT_STREAMS = frozenset(["log(info)", "log(warning)", "log(error)", "stdout", "stderr"])
