"""minillm.apps.interop and the Hugging Face tokenizers work where torch cannot be imported:
a GPT-2-layout and a BERT-layout folder are written by ``save_hf`` from reference
models, read back with ``read_hf`` / ``load_hf(backend="numpy")`` and give the same
logits, and a sentence-transformers layout of the BERT one is read with its pooling,
all in a child interpreter that refuses ``import torch``."""
import textwrap

from without_torch import assert_ok, run_without_torch

CHILD = textwrap.dedent("""
    import json, sys, tempfile
    from pathlib import Path
    import numpy as np
    import minillm.reference as ref
    from minillm.core.config import ModelConfig
    from minillm.apps.interop import load_hf, read_hf, save_hf, sentence_embeddings
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
    # the same folder in sentence-transformers 6's layout: its settings are read from JSON
    st = folder / "bert"
    (st / "modules.json").write_text(json.dumps([
        {"path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
        {"path": "1_Pooling", "type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling"},
        {"path": "2_Normalize", "type": "sentence_transformers.base.modules.normalize.Normalize"}]))
    (st / "1_Pooling").mkdir()
    (st / "1_Pooling" / "config.json").write_text(json.dumps(
        {"embedding_dimension": 16, "pooling_mode": ["cls", "max"], "include_prompt": True}))
    (st / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 6}))
    ckpt = read_hf(st)
    assert (ckpt.pooling, ckpt.normalize, ckpt.sentence.max_seq_length) == (("cls", "max"), True, 6)
    e = sentence_embeddings(model, ids, None, ckpt.pooling, ckpt.normalize)
    assert e.shape == (2, 32) and np.allclose(np.linalg.norm(e, axis=1), 1.0)
    tok = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "##s", ","])
    assert tok.encode("Hellos, world") == [2, 4, 5, 6, 1, 3]
    assert "torch" not in sys.modules
""")


def test_interop_without_torch():
    assert_ok(run_without_torch(CHILD))
