"""Text from the GPT-2 of a Hugging Face folder, with its own tokenizer: :func:`text_stream`
(pieces as they come) and :func:`generate_text` (all at once)."""
from __future__ import annotations

from .reading import read_hf
from .tokenizer import load_hf_tokenizer


def text_stream(folder, prompt: str, *, max_new_tokens: int = 50, temperature: float = 0.8,
                top_k: int | None = 40, top_p: float | None = None, seed: int | None = 0,
                backend: str = "numpy", device: str = "cpu", use_cache: bool = True,
                allow_bin: bool = False, fused: bool = True):
    """A :class:`~minillm.train.generation.TextStream` continuing ``prompt`` with the GPT-2
    of a Hugging Face folder (its own tokenizer; an empty prompt starts from
    ``<|endoftext|>``). Stops after ``<|endoftext|>``."""
    from ...store.runtime import Runtime
    from ...train.generation import TextStream

    ckpt = read_hf(folder, allow_bin=allow_bin)
    if ckpt.model_class != "GPT":
        raise ValueError(f"{folder}: generation needs a GPT-2 folder, got {ckpt.architecture}")
    tok = load_hf_tokenizer(folder)
    rt = Runtime(backend, device, fused=fused)   # torch: the fast path unless fused=False
    model = rt.module.GPT(ckpt.config)
    model.load_state_dict(ckpt.state)
    model = rt.prepare(model)
    return TextStream(rt, model, tok, prompt, start_id=tok.eos_id, max_new_tokens=max_new_tokens,
                      temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, use_cache=use_cache)


def generate_text(folder, prompt: str, **options) -> str:
    """Continue ``prompt`` with the GPT-2 of a Hugging Face folder; returns the new text
    (:func:`text_stream`'s pieces joined; the same options)."""
    return "".join(text_stream(folder, prompt, **options))
