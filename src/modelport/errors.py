"""The exception tree. Every error carries where it happened and what to do next.

    ModelportError                 base; .path .format .member .tensor .offset .hint
    ├── InputError                 the input cannot be read as what it claims to be
    │   ├── UnknownFormat          no reader recognises the bytes
    │   │   └── UnsupportedFormat  the format is recognised, but not read (or written) yet
    │   ├── FileMissing            no such file or folder (also a FileNotFoundError)
    │   ├── Truncated              the file ends before a structure does
    │   ├── MalformedHeader        a header (safetensors JSON, zip directory, npy) is invalid
    │   ├── PickleError            a pickle stream is broken or does something unreadable
    │   ├── LimitExceeded          a size, count or depth limit was hit before allocating
    │   └── RepoError              a Hugging Face folder: missing shard, extra shard, bad index
    ├── UnsafeInput                convert refuses a source whose scan found code execution
    ├── OutputError                DST exists, DST is SRC, disk full, unwritable folder
    ├── UsageError                 bad options or an unsupported combination
    └── MissingExtra               an optional dependency (torch, onnx, ...) is not installed

``str(err)`` is the one line the CLI prints: the location first, then the problem, then the hint.
"""

from __future__ import annotations

__all__ = [
    "ModelportError",
    "InputError",
    "UnknownFormat",
    "UnsupportedFormat",
    "FileMissing",
    "Truncated",
    "MalformedHeader",
    "PickleError",
    "LimitExceeded",
    "RepoError",
    "UnsafeInput",
    "OutputError",
    "UsageError",
    "MissingExtra",
]


# Names and values quoted from a file may hold line breaks; the CLI's error is one line.
_ONE_LINE = {ord(c): repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


class ModelportError(Exception):
    """Base class. Keyword fields locate the problem; ``hint`` says what to do."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        format: str | None = None,
        member: str | None = None,
        tensor: str | None = None,
        offset: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.format = format
        self.member = member
        self.tensor = tensor
        self.offset = offset
        self.hint = hint

    def located(self, **fields: object) -> ModelportError:
        """Fill in location fields that are still empty (callers higher up know the path)."""
        for key, value in fields.items():
            if getattr(self, key, None) is None and value is not None:
                setattr(self, key, value)
        return self

    def __str__(self) -> str:
        where = []
        if self.path:
            where.append(str(self.path))
        if self.member:
            where.append(f"member {self.member}")
        if self.tensor:
            where.append(f"tensor {self.tensor!r}")
        if self.offset is not None:
            where.append(f"byte {self.offset}")
        text = ": ".join(filter(None, [", ".join(where), self.message]))
        if self.hint:
            text += f" ({self.hint})"
        return text.translate(_ONE_LINE)


class InputError(ModelportError):
    pass


class UnknownFormat(InputError):
    pass


class UnsupportedFormat(UnknownFormat):
    pass


class FileMissing(InputError, FileNotFoundError):
    def __str__(self) -> str:  # FileNotFoundError's own __str__ would drop the location
        return ModelportError.__str__(self)


class Truncated(InputError):
    pass


class MalformedHeader(InputError):
    pass


class PickleError(InputError):
    pass


class LimitExceeded(InputError):
    pass


class RepoError(InputError):
    pass


class UnsafeInput(ModelportError):
    pass


class OutputError(ModelportError):
    pass


class UsageError(ModelportError):
    pass


class MissingExtra(ModelportError):
    def __init__(self, module: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs {module}, which is not installed",
            hint=f"pip install 'modelport[{extra}]'",
        )
