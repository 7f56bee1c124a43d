"""TensorFlow checkpoints (TF1 Saver and TF2 tf.train.Checkpoint): recognised by the index
file's SSTable footer; reading and scanning land with issue [2/7].

    <prefix>.index                  SSTable of BundleEntryProto; the last 8 bytes are the magic
    <prefix>.data-NNNNN-of-NNNNN    tensor bytes
"""

from __future__ import annotations

from .base import Format, Probe

# table/format.h: kTableMagicNumber, written little-endian in the footer's last 8 bytes.
SSTABLE_MAGIC = (0xDB4775248B80FB57).to_bytes(8, "little")


def _sniff(probe: Probe) -> bool:
    return probe.size >= 48 and probe.tail.endswith(SSTABLE_MAGIC)


FORMAT = Format("tf-checkpoint", "tensorflow", _sniff, order=26,
                title="TensorFlow checkpoint index",
                unsupported="TensorFlow checkpoints are recognised but not read or analysed yet")
