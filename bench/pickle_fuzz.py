"""atheris run of the pickle parity property (issue #7, item 3).

    pip install --target /tmp/atheris_pkgs atheris
    PYTHONPATH=src:tests/pickle:/tmp/atheris_pkgs python bench/pickle_fuzz.py \
        -max_total_time=300 -rss_limit_mb=3500 /tmp/pickle_fuzz_corpus

Every input is read by CPython's own C unpickler made inert (tests/pickle/pickle_oracle.py:
nothing imported, nothing called) as pickle.loads reads bytes and as torch.load reads data.pkl
(io.BytesIO), and by modelport's machine in the same two modes. A global the oracle resolves
that the machine does not record is a crash (a parity bug); so is any exception from the
machine other than its own errors. The seed corpus is CPython's pickles of a checkpoint-like
value in protocols 0-5.
"""

from __future__ import annotations

import collections
import os
import pickle
import sys

import atheris

with atheris.instrument_imports():
    from pickle_oracle import covered, machine_globals, oracle_globals


def test_one(data: bytes) -> None:
    if len(data) > 4096:
        return  # the oracle allocates what a length says: keep inputs small
    for file_mode in (False, True):
        found = oracle_globals(data, file_mode, isolated=False)  # capped below
        names = machine_globals(data, file_mode)
        missing = [p for p in found if not covered(p, names)]
        if missing:
            raise AssertionError(f"file_mode={file_mode}: CPython resolves {missing}, the "
                                 f"machine does not")


def _seed(folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    value = {"state": collections.OrderedDict(w=[1.0, 2.0]), "epoch": 3,
             "cfg": {"lr": 0.1, "betas": (0.9, 0.99)}, "hook": os.system}
    for p in range(6):
        with open(os.path.join(folder, f"seed{p}"), "wb") as f:
            f.write(pickle.dumps(value, protocol=p))


if __name__ == "__main__":
    import resource

    # CPython's unpickler sizes its memo by a LONG_BINPUT index (4 bytes: up to 32 GiB of
    # pointers): cap the address space so the oracle gets a MemoryError instead.
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    corpus = [a for a in sys.argv[1:] if not a.startswith("-")]
    if corpus:
        _seed(corpus[0])
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()
