"""modelport's symbolic unpickler: pickles decoded and interpreted, never executed.

``machine`` interprets opcodes; ``builders`` turns the calls torch and numpy write into data.
The scanner (``modelport.scan``) runs the same machine and judges what it recorded.
"""

from __future__ import annotations

from .builders import BUILDERS, StorageRef
from .machine import Anomaly, Call, Machine, Ref, Result, unpickle

__all__ = ["BUILDERS", "StorageRef", "Anomaly", "Call", "Machine", "Ref", "Result", "unpickle"]
