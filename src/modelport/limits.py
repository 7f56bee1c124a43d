"""Every size, count and depth limit in one place, checked before anything is allocated."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits", "DEFAULT_LIMITS"]


@dataclass(frozen=True)
class Limits:
    header_bytes: int = 100_000_000  # safetensors JSON header: the reference's MAX_HEADER_SIZE
    tensors: int = 1_000_000  # entries in one file
    pickle_bytes: int = 1 << 31  # one pickle stream read into memory
    pickle_ops: int = 50_000_000  # opcodes interpreted in one pickle
    memo: int = 10_000_000  # memo entries
    depth: int = 10_000  # nested MARKs / containers
    member_bytes: int = 1 << 32  # one decompressed archive member
    scan_bytes: int = 1 << 30  # one stream the scanner decompresses into memory to look inside
    ratio: int = 1000  # decompressed / compressed size of one member
    members: int = 1_000_000  # archive members
    nested_pickles: int = 16  # depth of pickles found inside pickles (scanner)
    # GGUF metadata: key-value pairs, elements of one array (llama.cpp: GGUF_MAX_ARRAY_ELEMENTS
    # is 2**30; the largest real vocabularies hold ~260K tokens), arrays nested in arrays
    # (llama.cpp reads none; the gguf package any), and all of it decoded into memory.
    gguf_kv: int = 1_000_000
    gguf_array: int = 1 << 30
    gguf_nesting: int = 8
    gguf_metadata_bytes: int = 1 << 30
    # Structures nested inside a file: HDF5 groups and B-tree levels, ONNX subgraphs (If/Loop
    # bodies), the JSON of a repo's config and index files. Real files nest a handful of levels.
    nesting: int = 64
    header_blocks: int = 100_000  # HDF5 object header continuation blocks in one file


DEFAULT_LIMITS = Limits()
