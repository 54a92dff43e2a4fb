"""A Hugging Face folder's tokenizer as one JSON record: its files, verbatim, for a run
trained from such a folder (SFT, issue 26). The run's ``tokenizer.json`` and checkpoints
hold the record, and :func:`~.folder.read_record` reads the same tokenizer back from it, so the run
needs the folder no more; the vocabulary files stay the format (no second one).

``{"kind": "hf_tokenizer_folder", "files": {name: text}, "chat_template": str | None}``.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["KIND", "FILES", "folder_record", "record_of"]

KIND = "hf_tokenizer_folder"
# every file read_tokenizer_folder reads (all text)
FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
         "vocab.txt")


def folder_record(folder) -> dict:
    """The tokenizer files of ``folder`` as a record (without a chat template)."""
    folder = Path(folder)
    return {"kind": KIND, "files": {name: (folder / name).read_text(encoding="utf-8") for name in FILES
                                    if (folder / name).is_file()}}


def record_of(tok) -> dict:
    """``tok.to_dict()`` of the folder tokenizers: the record they were read from, with the
    chat template they carry."""
    if tok.record is None:
        raise ValueError(f"this {tok.kind} was built in memory, not read from a folder, so it has no files to "
                         "record; expected one from read_tokenizer_folder")
    return {**tok.record, "chat_template": tok.chat_template}
