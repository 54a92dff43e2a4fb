"""Sentence embeddings from the BERT of a Hugging Face folder, as sentence-transformers
computes them from that folder (:func:`embed_texts`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import sentence_transformers
from .files import read_json
from .pooling import sentence_embeddings
from .reading import HFCheckpoint, read_hf
from .tokenizer import load_hf_tokenizer


def _max_tokens(folder, ckpt: HFCheckpoint) -> int:
    """Tokens per text, [CLS] and [SEP] included, as sentence-transformers cuts them:
    sentence_bert_config.json's max_seq_length, else tokenizer_config.json's
    model_max_length capped at the model's positions, else the model's positions."""
    if ckpt.sentence is not None and ckpt.sentence.max_seq_length is not None:
        return ckpt.sentence.max_seq_length                    # read_hf checked it fits
    body, _ = sentence_transformers.read_settings(Path(folder))
    path = body / "tokenizer_config.json"
    limit = read_json(path).get("model_max_length") if path.is_file() else None
    if limit is None:
        return ckpt.config.block_size
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit < 2:
        raise ValueError(f"{path}: expected model_max_length a number >= 2 ([CLS] and [SEP]), "
                         f"got {limit!r}")
    return int(min(limit, ckpt.config.block_size))



def embed_texts(folder, texts, *, backend: str = "numpy", device: str = "cpu",
                pooling=None, normalize: bool | None = None,
                allow_bin: bool = False, fused: bool = True) -> np.ndarray:
    """Sentence embeddings of ``texts`` with the BERT of a Hugging Face folder, as
    sentence-transformers computes them from that folder: each text is ``[CLS] ... [SEP]``
    cut to the folder's length (:class:`SentenceSettings`; a plain folder: its tokenizer's
    ``model_max_length`` or the model's positions), lower-cased first if the folder says so,
    the batch right-padded, then :func:`sentence_embeddings` with the folder's pooling and
    normalization (a plain folder: mean pooling), then cut to ``truncate_dim``.
    ``pooling`` and ``normalize`` override the folder's. Shapes: -> (len(texts), C * modes).
    ``fused`` picks the torch backend's fast path (torch's kernels) or, False, its
    explicit formulas."""
    from ...store.runtime import Runtime

    ckpt = read_hf(folder, allow_bin=allow_bin)
    if ckpt.model_class != "TransformerEncoder":
        raise ValueError(f"{folder}: sentence embeddings need a BERT folder, got {ckpt.architecture}")
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise ValueError("expected at least one text to embed, got none")
    tok = load_hf_tokenizer(folder)
    T = _max_tokens(folder, ckpt)
    rows = [tok.encode(t) for t in texts]
    rows = [r if len(r) <= T else r[:T - 1] + [tok.sep_id] for r in rows]
    L = max(len(r) for r in rows)
    pad = tok.pad_id if tok.pad_id is not None else 0
    idx = np.full((len(rows), L), pad, dtype=np.int64)                # (B, L)
    mask = np.zeros((len(rows), L), dtype=bool)                       # (B, L)
    for b, r in enumerate(rows):
        idx[b, :len(r)], mask[b, :len(r)] = r, True
    rt = Runtime(backend, device, fused=fused)   # torch: the fast path unless fused=False
    model = rt.module.TransformerEncoder(ckpt.config)
    model.load_state_dict(ckpt.state)
    model = rt.prepare(model)
    model.eval()
    with rt.no_grad():
        e = sentence_embeddings(model, rt.tensor(idx), rt.tensor(mask),
                                pooling or ckpt.pooling or "mean",
                                ckpt.normalize if normalize is None else normalize)
    if ckpt.sentence is not None and ckpt.sentence.truncate_dim is not None:
        e = e[:, :ckpt.sentence.truncate_dim]                         # after Normalize, as there
    return e
