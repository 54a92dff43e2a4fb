"""minillm.interop and the Hugging Face tokenizers work where torch cannot be imported:
a GPT-2-layout and a BERT-layout folder are written by ``save_hf`` from reference
models, read back with ``read_hf`` / ``load_hf(backend="numpy")`` and give the same
logits, all in a child interpreter that refuses ``import torch``."""
import textwrap

from test_no_torch import _assert_ok, run_without_torch

CHILD = textwrap.dedent("""
    import sys, tempfile
    from pathlib import Path
    import numpy as np
    import minillm.reference as ref
    from minillm.config import ModelConfig
    from minillm.interop import load_hf, save_hf, sentence_embeddings
    from minillm.data import GPT2Tokenizer, WordPieceTokenizer

    folder = Path(tempfile.mkdtemp())
    ids = np.random.default_rng(0).integers(0, 50, (2, 6))
    gpt = ref.GPT(ModelConfig(vocab_size=50, block_size=8, d_model=16, n_heads=2, n_layers=1,
                              activation="gelu_tanh", tie_embeddings=True), seed=1)
    save_hf(gpt, folder / "gpt")
    model, ckpt = load_hf(folder / "gpt", "numpy")
    assert ckpt.architecture == "GPT2LMHeadModel"
    assert np.array_equal(model(ids)[0], gpt(ids)[0])
    bert = ref.TransformerEncoder(ModelConfig(
        vocab_size=50, block_size=8, d_model=16, n_heads=2, n_layers=1, norm_first=False,
        type_vocab_size=2, embedding_norm=True, tie_embeddings=True, layer_norm_eps=1e-12), seed=2)
    save_hf(bert, folder / "bert")
    model, ckpt = load_hf(folder / "bert", "numpy")
    assert ckpt.architecture == "BertModel"
    assert np.array_equal(sentence_embeddings(model, ids), sentence_embeddings(bert, ids))
    tok = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "##s", ","])
    assert tok.encode("Hellos, world") == [2, 4, 5, 6, 1, 3]
    assert "torch" not in sys.modules
""")


def test_interop_without_torch():
    _assert_ok(run_without_torch(CHILD))
