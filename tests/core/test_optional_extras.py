"""A missing optional dependency ends in one line that names the extra to install.

Each case hides one module (``sys.modules[name] = None`` makes ``import name`` fail as if
it were not installed), triggers the code that needs it, and checks the message names
the module and the ``pip install 'minillm[extra]'`` that brings it.
"""
import importlib
import sys

import pytest

from minillm import cli
from minillm.store import runtime


def _import_serving():
    sys.modules.pop("minillm.serving", None)
    importlib.import_module("minillm.serving")


def _serve():
    from minillm import serving
    serving.serve("no-such-run")


def _torch_backend():
    for key in [k for k in sys.modules if k.startswith("minillm.torch_backend")]:
        del sys.modules[key]
    runtime.Runtime("torch")


def _pretokenizer_pattern():
    from minillm.data import hf_tokenizers
    hf_tokenizers._pretokenizer_pattern.cache_clear()
    try:
        hf_tokenizers._pretokenizer_pattern()
    finally:
        hf_tokenizers._pretokenizer_pattern.cache_clear()


def _chat_template():
    from minillm.data import chat_template
    chat_template._compiled.cache_clear()
    try:
        chat_template.render_chat("{{ messages[0].content }}", [{"role": "user", "content": "x"}])
    finally:
        chat_template._compiled.cache_clear()


def _nltk():
    from minillm.data import word_tokenizer
    word_tokenizer._nltk_splitter("treebank")


def _matplotlib():
    from minillm.core import plots
    plots._new_figure((2, 2))


def _torch_bin(tmp_path):
    from minillm.apps.interop import files
    (tmp_path / "pytorch_model.bin").write_bytes(b"never read: torch is missing")
    files.read_tensors(tmp_path, allow_bin=True)


def _bf16_weights():
    import json
    import struct
    import tempfile
    from pathlib import Path

    from minillm.apps.interop import files
    header = json.dumps({"w": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}}).encode()
    header += b" " * (-len(header) % 8)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
        files.read_safetensors(path)


CASES = {  # hidden module: (what triggers it, the extra named)
    "anyio": (_import_serving, "serve"),
    "fastapi": (_import_serving, "serve"),
    "pydantic": (_import_serving, "serve"),
    "uvicorn": (_serve, "serve"),
    "torch": (_torch_backend, "torch"),
    "regex": (_pretokenizer_pattern, "hf"),
    "jinja2": (_chat_template, "hf"),
    "ml_dtypes": (_bf16_weights, "hf"),
    "nltk": (_nltk, "pipeline"),
    "matplotlib": (_matplotlib, "pipeline"),
}


def test_reading_a_pytorch_bin_without_torch_names_the_torch_extra(hide, tmp_path):
    hide("torch")
    with pytest.raises(ImportError, match=r"torch, which is not installed: pip install 'minillm\[torch\]'"):
        _torch_bin(tmp_path)


def test_serve_without_anyio_is_one_error_line(hide, capsys, monkeypatch):
    """The issue's report: `minillm serve` printed `error: No module named 'anyio'`.
    ``minillm.serving`` is dropped from sys.modules and from the package's attributes
    (``from . import serving`` returns the attribute when an earlier test imported it)."""
    import minillm
    pytest.importorskip("fastapi")
    hide("anyio")
    sys.modules.pop("minillm.serving", None)
    monkeypatch.delattr(minillm, "serving", raising=False)
    assert cli.main(["serve", "no-such-run"]) == 2
    err = capsys.readouterr().err
    assert err == ("error: minillm serve (minillm.serving) needs anyio, which is not installed: "
                   "pip install 'minillm[serve]' (in a clone of the repository: "
                   "pip install -e '.[serve]')\n")


@pytest.mark.parametrize("module", sorted(CASES))
def test_a_missing_module_names_its_extra(hide, module):
    trigger, extra = CASES[module]
    if module != "torch" and module != "uvicorn":
        pytest.importorskip(module)           # the message is only checked where the module exists
    hide(module)
    with pytest.raises(ImportError) as info:
        trigger()
    message = str(info.value)
    assert f"pip install 'minillm[{extra}]'" in message, message
    assert module in message and "\n" not in message, message
