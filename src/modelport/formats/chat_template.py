"""Chat templates of Hugging Face folders: Jinja code a front-end renders, scanned, never run.

    tokenizer_config.json   {"chat_template": "<jinja>" | [{"name": ..., "template": ...}], ...}
    chat_template.json      {"chat_template": "<jinja>"}  (processors)
    chat_template.jinja     the template itself (transformers >= 4.50 saves it so); also any
                            ``*.jinja`` (``additional_chat_templates/NAME.jinja``)

These files hold no tensors: the format exists so that the scanner, which walks a folder file by
file and asks the registry about each, judges their templates (``scan.templates``) instead of
passing them as data. Recognised by name and content: the JSON names only when the text has a
``"chat_template"`` key.
"""

from __future__ import annotations

from .base import Format, Probe


def _sniff(probe: Probe) -> bool:
    if probe.path is None:
        return False
    from ..scan.templates import is_template_file

    return is_template_file(probe.path, probe.head)


FORMAT = Format("chat-template", "huggingface", _sniff, order=90, title="chat template (Jinja)",
                scan="modelport.scan.templates:scan_template_file",
                unsupported="a chat template file holds no tensors; `modelport scan` judges its "
                "Jinja template")
