"""Text from the GPT-2 of a Hugging Face folder, with its own tokenizer (:func:`generate_text`)."""
from __future__ import annotations

from .reading import read_hf
from .tokenizer import load_hf_tokenizer


def generate_text(folder, prompt: str, *, max_new_tokens: int = 50, temperature: float = 0.8,
                  top_k: int | None = 40, top_p: float | None = None, seed: int | None = 0,
                  backend: str = "numpy", device: str = "cpu", use_cache: bool = True,
                  allow_bin: bool = False, fused: bool = True) -> str:
    """Continue ``prompt`` with the GPT-2 of a Hugging Face folder (its own tokenizer);
    returns the new text. Stops after ``<|endoftext|>``."""
    from ...train.generation import generate
    from ...store.runtime import Runtime

    ckpt = read_hf(folder, allow_bin=allow_bin)
    if ckpt.model_class != "GPT":
        raise ValueError(f"{folder}: generation needs a GPT-2 folder, got {ckpt.architecture}")
    tok = load_hf_tokenizer(folder)
    rt = Runtime(backend, device, fused=fused)   # torch: the fast path unless fused=False
    model = rt.module.GPT(ckpt.config)
    model.load_state_dict(ckpt.state)
    model = rt.prepare(model)
    ids = tok.encode(prompt) or [tok.eos_id]
    new = generate(rt, model, ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                   seed=seed, eos_id=tok.eos_id, use_cache=use_cache)
    return tok.decode(new, skip_special_tokens=True)

