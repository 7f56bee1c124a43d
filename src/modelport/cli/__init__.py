"""The command line: ``modelport COMMAND ...``; one module per command, ``main(argv) -> int``.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int``. Errors from
the library become one line on stderr and exit code 2 (``--debug`` shows the traceback); the
table below maps each error class to its exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import Any, TextIO

from ..errors import _ONE_LINE, ModelportError, UnsafeInput

__all__ = ["main", "run", "human_bytes", "plural"]

# command -> (module, one-line help); the contract in DESIGN.md names these.
COMMANDS = {
    "inspect": ("inspect", "show what a model file holds, without running it"),
    "convert": ("convert", "convert between formats, shard, merge and cast, in bounded memory"),
    "scan": ("scan", "static security analysis: flag files a loader would run code from"),
    "verify": ("verify", "check that two files hold the same tensors"),
    "diff": ("diff", "show tensors added, removed and changed between two files"),
    "view": ("view", "a local page to look inside a model file, or two side by side"),
    "merge-lora": ("merge_lora", "merge a LoRA adapter into its base model, streaming"),
    "extract-lora": ("extract_lora", "a LoRA adapter from a fine-tuned model (truncated SVD)"),
    "export": ("export", "export to ONNX (recognised architectures need no class) and check "
               "parity with onnxruntime"),
    "parity": ("parity", "compare an ONNX model with the PyTorch model it came from"),
}

EXIT_OK, EXIT_DIFFER, EXIT_ERROR = 0, 1, 2
_EXIT_CODES: dict[type[ModelportError], int] = {UnsafeInput: EXIT_ERROR, ModelportError: EXIT_ERROR}

EPILOG = """\
examples:
  modelport inspect pytorch_model.bin          what is inside, and is it safe
  modelport inspect last.ckpt --json           the same, for scripts
  modelport convert model.pth model.safetensors
  modelport convert ./repo ./out --max-shard-size 2GB --dtype BF16
  modelport scan ~/Downloads                   exit 1 if anything would run code
"""


def plural(n: int, word: str) -> str:
    """``1 tensor``, ``2 tensors``, ``1,024 tensors``."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def human_bytes(n: float, digits: int = 2) -> str:
    """``1234567`` -> ``1.23 MB`` (decimal units, as file managers and ``--max-shard-size``)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.{digits}f} {unit}"
        n /= 1000
    return ""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's RawDescriptionHelpFormatter with the terminal width found once per parser
    (``_parser`` resets it). argparse asks ``shutil.get_terminal_size()`` for every argument it
    adds (to check that its help formats), which imports shutil (and bz2, lzma, fnmatch) at
    every start; the width is found here as shutil finds it: $COLUMNS, the terminal, 80."""

    _columns: int | None = None

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         width if width is not None else self.columns() - 2)

    @classmethod
    def columns(cls) -> int:
        if cls._columns is None:
            try:
                cls._columns = int(os.environ.get("COLUMNS", "0"))
            except ValueError:
                cls._columns = 0
            if cls._columns <= 0:
                out = sys.__stdout__
                try:
                    cls._columns = os.get_terminal_size(out.fileno()).columns if out else 0
                except (AttributeError, ValueError, OSError):
                    cls._columns = 0
            cls._columns = cls._columns or 80
        return cls._columns


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    _Formatter._columns = None  # looked up again for each parser, as argparse would
    parser = argparse.ArgumentParser(
        prog="modelport",
        description="Inspect, scan and convert deep-learning model files (PyTorch, safetensors, "
        "Hugging Face folders, ONNX, NumPy) without executing anything inside them.",
        epilog=EPILOG,
        formatter_class=_Formatter,
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"modelport {__version__}")
    parser.add_argument("--debug", action="store_true", dest="debug_all",
                        help="show tracebacks on errors (also accepted after the command)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if only is not None and name != only:
            continue  # import only the command being run: start-up time is part of inspect's
        try:
            mod = importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module}":
                raise
            continue  # command not built yet
        p = sub.add_parser(name, help=help_text, description=(mod.__doc__ or help_text).strip(),
                           formatter_class=_Formatter)
        mod.add_arguments(p)
        p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
        p.set_defaults(_run=mod.run, _parser=p)
    return parser


# Arguments that may name remote inputs (https://, hf://, owner/repo), per command.
_REMOTE_ARGS = {"inspect": ("paths",), "scan": ("paths",), "verify": ("a", "b"),
                "diff": ("a", "b"), "convert": ("src",)}


class _Display:
    """A text stream that writes mirror paths as the URLs the user typed."""

    def __init__(self, stream: TextIO, session: Any) -> None:
        self._stream, self._session = stream, session

    def write(self, text: str) -> int:
        return self._stream.write(self._session.display(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Only the command's name is looked at before parsing: `modelport --debug inspect x` works.
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = _parser(command if command in COMMANDS else None)
    args, extra = parser.parse_known_args(argv)
    if extra:  # the error names the command whose options were wrong
        (getattr(args, "_parser", None) or parser).error(
            f"unrecognized arguments: {' '.join(extra)}")
    args.debug = getattr(args, "debug", False) or args.debug_all
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    names = _REMOTE_ARGS.get(args.command, ())
    values = [v for n in names for v in (getattr(args, n) if isinstance(getattr(args, n), list)
                                         else [getattr(args, n)])]
    from .. import remote

    if not any(isinstance(v, str) and remote.is_remote(v) for v in values):
        return _main(args)
    with remote.session(whole_folders=args.command == "scan") as session:
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Display(out, session), _Display(err, session)  # type: ignore
        try:
            args._remote = session
            try:
                for n in names:
                    v = getattr(args, n)
                    setattr(args, n, [session.localize(x) if remote.is_remote(x) else x
                                      for x in v] if isinstance(v, list)
                            else session.localize(v) if remote.is_remote(v) else v)
            except ModelportError as exc:
                print(f"modelport {args.command}: error: {exc}", file=sys.stderr)
                return EXIT_ERROR
            return _main(args)
        finally:
            sys.stdout, sys.stderr = out, err


def _main(args: argparse.Namespace) -> int:
    try:
        return int(args._run(args))
    except ModelportError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"modelport {args.command}: error: {exc}", file=sys.stderr)
        return next(code for cls, code in _EXIT_CODES.items() if isinstance(exc, cls))
    except BrokenPipeError:  # `modelport inspect x | head`: the reader left, not an error
        return EXIT_OK
    except OSError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"modelport {args.command}: error: {exc.filename or ''}: {exc.strerror or exc}",
              file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"modelport {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug in modelport still ends in one line, exit 2
        if args.debug:
            traceback.print_exc()
        text = f"{type(exc).__name__}: {exc}".translate(_ONE_LINE)
        print(f"modelport {args.command}: internal error: {text} (please report it; --debug "
              "shows the traceback)", file=sys.stderr)
        return EXIT_ERROR


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
