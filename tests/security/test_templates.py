"""Chat templates: one test per sandbox-escape technique, and the templates real models ship are
clean. Templates are parsed by Jinja's parser, never rendered: a canary file proves nothing ran.

The real templates below are the public chat templates of the named models (their
tokenizer_config.json ``chat_template``), written out here.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from modelport.cli import main
from modelport.scan import scan_file
from modelport.scan.templates import template_problems

pytest.importorskip("jinja2")

REAL = {
    "llama3": (
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
        "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | "
        "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
        "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
        "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"),
    "qwen2": (
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
        "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"),
    "mistral": (
        "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
        "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
        "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}"
        "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' "
        "%}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and "
        "assistant roles are supported!') }}{% endif %}{% endfor %}"),
    "chatml": (
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
        "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\n' }}{% endif %}"),
    "gemma": (
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role "
        "not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == "
        "'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must "
        "alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == "
        "'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
        "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + "
        "'<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}"
        "{{'<start_of_turn>model\n'}}{% endif %}"),
    # Qwen3's tool-aware prologue: namespace(), reversed slices, |tojson, {%- -%} trimming.
    "qwen3-tools": (
        "{%- if tools %}{{- '<|im_start|>system\n' }}{%- for tool in tools %}{{- '\n' }}"
        "{{- tool | tojson }}{%- endfor %}{%- endif %}{%- set ns = namespace(multi_step_tool="
        "true, last_query_index=messages|length - 1) %}{%- for message in messages[::-1] %}"
        "{%- set index = (messages|length - 1) - loop.index0 %}{%- if ns.multi_step_tool and "
        "message.role == \"user\" %}{%- set ns.multi_step_tool = false %}{%- set "
        "ns.last_query_index = index %}{%- endif %}{%- endfor %}{%- for message in messages %}"
        "{%- if message.content is string %}{{- '<|im_start|>' + message.role + '\n' + "
        "message.content + '<|im_end|>\n' }}{%- endif %}{%- if loop.last %}{% break %}"
        "{%- endif %}{%- endfor %}{% generation %}{{ '' }}{% endgeneration %}"),
}

# technique -> (template, rule expected among the findings)
ESCAPES = {
    "cve-2024-34359": (
        "{% for x in ().__class__.__base__.__subclasses__() %}{% if \"warning\" in x.__name__ %}"
        "{{x()._module.__builtins__['__import__']('os').popen(\"touch CANARY\")}}{%endif%}"
        "{% endfor %}", "jinja-gadget-attr"),
    "dunder attribute": ("{{ ''.__class__ }}", "jinja-gadget-attr"),
    "private attribute": ("{{ messages._secret }}", "jinja-private-attr"),
    "item access to a dunder": ("{{ messages['__class__'] }}", "jinja-gadget-attr"),
    "computed item name": ("{{ messages['__cla' ~ 'ss__'] }}", "jinja-gadget-attr"),
    "item name from a filter": ("{{ messages['__ssalc__'|reverse] }}", "jinja-computed-key"),
    "attr filter": ("{{ messages|attr('\\x5f\\x5fclass\\x5f\\x5f') }}", "jinja-attr-filter"),
    "map attribute": ("{{ messages|map(attribute='__class__')|list }}", "jinja-dunder-string"),
    "cycler globals": ("{{ cycler.__init__.__globals__.os.popen('id').read() }}",
                       "jinja-global-object"),
    "joiner": ("{{ joiner.__init__ }}", "jinja-global-object"),
    "namespace object": ("{{ namespace.__init__.__globals__ }}", "jinja-global-object"),
    "lipsum globals": ("{{ lipsum.__globals__['os'] }}", "jinja-global-object"),
    "range object": ("{{ range.__self__ }}", "jinja-global-object"),
    "self reference": ("{{ self._TemplateReference__context }}", "jinja-self"),
    "flask config": ("{{ config.items() }}", "jinja-framework-global"),
    "flask request": ("{{ request.application }}", "jinja-framework-global"),
    "str.format": ("{{ '{0.__class__}'.format(messages) }}", "jinja-str-format"),
    "format_map": ("{{ '{x}'.format_map(messages) }}", "jinja-str-format"),
    "frame walk": ("{{ gen.gi_frame.f_back.f_globals }}", "jinja-internal-attr"),
    "mro": ("{{ messages.mro() }}", "jinja-internal-attr"),
    "include": ("{% include '/etc/passwd' %}", "jinja-load"),
    "import": ("{% import 'macros.j2' as m %}", "jinja-load"),
    "huge range": ("{% for i in range(99999999999) %}{% endfor %}", "jinja-huge-range"),
    # found in review: names {% set %} from pieces, then used as item keys (x[k] falls back
    # to an attribute read); no single string holds a dunder name
    "set-built keys": ("{% set u = '_' * 2 %}{% set c = u + 'class' + u %}"
                       "{% set b = u + 'base' + u %}{% set s = u + 'subclasses' + u %}"
                       "{{ ()[c][b][s]()[-1] }}", "jinja-gadget-attr"),
    "set from a filter": ("{% set c = ['__cla', 'ss__']|join %}{{ ()[c] }}",
                          "jinja-computed-key"),
    "set block": ("{% set c %}{{ '_' * 2 }}class{{ '_' * 2 }}{% endset %}{{ ()[c] }}",
                  "jinja-computed-key"),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_templates_are_clean(name: str) -> None:
    assert template_problems(REAL[name]) == []


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_escape_shapes_are_unsafe(tmp_path: Path, name: str) -> None:
    template, rule = ESCAPES[name]
    problems = template_problems(template)
    assert not isinstance(problems, str), problems
    assert rule in {p[1] for p in problems}
    # The same template in a GGUF file and in a Hugging Face folder: unsafe, and never rendered.
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(_gguf_with_template(template.replace("CANARY", str(tmp_path / "canary"))))
    report = scan_file(gguf)
    assert report.verdict == "unsafe" and rule in {f.rule for f in report.findings}
    assert any("tokenizer.chat_template" in (f.subject or "") for f in report.findings)
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    assert scan_file(folder).verdict == "unsafe"
    assert not (tmp_path / "canary").exists()


def _gguf_with_template(template: str, key: bytes = b"tokenizer.chat_template") -> bytes:
    raw = template.encode()
    return (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key
            + struct.pack("<IQ", 8, len(raw)) + raw)


def test_named_template_variants_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(_gguf_with_template("{{ x.__class__ }}", b"tokenizer.chat_template.rag"))
    report = scan_file(path)
    assert report.verdict == "unsafe"
    assert report.findings[0].subject == "tokenizer.chat_template.rag"


def test_a_template_jinja_cannot_parse_is_never_clean(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(_gguf_with_template("{% for x in %}"))
    report = scan_file(path)
    assert report.verdict == "error" and "cannot parse" in report.errors[0]
    assert main(["scan", str(path)]) == 2
    capsys.readouterr()


def test_hugging_face_template_files(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": [{"name": "default", "template": REAL["chatml"]},
                           {"name": "tool_use", "template": REAL["qwen3-tools"]}]}))
    (folder / "chat_template.jinja").write_text(REAL["llama3"])
    (folder / "config.json").write_text("{}")
    report = scan_file(folder)
    assert report.verdict == "clean", report.to_json()
    assert sum("chat template" in s for s in report.scanned) == 3
    extra = folder / "additional_chat_templates"
    extra.mkdir()
    (extra / "rag.jinja").write_text("{{ self.__dict__ }}")
    report = scan_file(folder)
    assert report.verdict == "unsafe"
    assert {f.rule for f in report.findings} >= {"jinja-self", "jinja-gadget-attr"}
    assert report.findings[0].member.startswith("additional_chat_templates")
