"""A reference GPT trains, saves and reloads in a Python where importing torch fails.

The child interpreter gets a finder at the front of ``sys.meta_path`` that refuses
``torch`` and ``torch.*``, so a stray import under minillm.reference, minillm.core.init or
minillm.store.model_io fails this test even on a machine with torch installed.
"""
import subprocess
import sys
import textwrap

from without_torch import BLOCK_TORCH

CHILD = BLOCK_TORCH + textwrap.dedent("""
    import os, tempfile

    import numpy as np
    import minillm.reference as ref
    from minillm.core.config import ModelConfig
    from minillm.store import model_io

    config = ModelConfig(vocab_size=11, block_size=8, d_model=16, n_heads=2, n_layers=2,
                         dropout=0.1, tie_embeddings=True)
    model = ref.GPT(config, seed=0)
    opt = ref.Adam(model.parameters(), lr=1e-2)
    x = np.random.default_rng(0).integers(0, 11, (4, 8))
    losses = []
    for _ in range(5):
        logits, loss = model(x, x)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert logits.shape == (4, 8, 11) and logits.dtype == np.float32
    assert losses[-1] < losses[0], losses
    folder = os.path.join(tempfile.mkdtemp(), "ck")
    model_io.save_checkpoint(folder, model, opt, step=5)
    loaded, ckpt = model_io.load_model(folder, "numpy")
    np.testing.assert_array_equal(loaded.tok_emb.W.data, model.tok_emb.W.data)
    clf = ref.SequenceClassifier(config, n_classes=2)
    _, closs = clf(x, labels=np.array([0, 1, 0, 1]), attention_mask=x > 0)
    closs.backward()
    assert "torch" not in sys.modules
    print("OK", losses[0], losses[-1])
""")


def test_reference_gpt_trains_and_checkpoints_without_torch():
    result = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("OK")
