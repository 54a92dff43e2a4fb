"""The same seed and arguments give the same run at any thread count: two identical
`minillm pretrain --backend torch` runs with two threads write the same losses and the
same weights, bit for bit, on both torch paths, and an interrupted run resumed with
`--resume` ends where the uninterrupted one does.

Why this needs a test at two threads: the test process runs torch with one thread
(conftest.py), where everything is deterministic. With two, the explicit embedding once
used ``W[ids]``, whose backward (an accumulating ``index_put_``) adds repeated rows in an
order that varies between runs: identical runs drifted apart from step 5 on. The runs
here are subprocesses with OMP_NUM_THREADS=2, as a user's default on this machine.
"""
import json
import os
import subprocess
import sys

import pytest

TEXT = ("the cat sat on the mat. the dog sat on the log. a bird sang in the tree. " * 80).strip()
# char tokens: every batch repeats each id many times, the case where the order of the
# scatter-add decides the rounding
MODEL = ["--d-model", "64", "--n-layers", "2", "--n-heads", "4", "--block-size", "64",
         "--batch-size", "16"]


def _cli(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2",
           "OPENBLAS_NUM_THREADS": "2", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", "minillm.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("det")
    (base / "corpus.txt").write_text(TEXT, encoding="utf-8")
    _cli("prepare", "--corpus", "corpus.txt", "--tokenizer", "char", "--out", "data", cwd=base)
    return base


def _losses(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def _weights(run):
    return (run / "checkpoints" / "last" / "model.safetensors").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("path", [[], ["--explicit"]], ids=["fast", "explicit"])
def test_two_identical_runs_at_two_threads_are_identical(data, path):
    runs = []
    for name in ("a", "b"):
        out = data / f"run-{name}-{len(path)}"
        _cli("pretrain", "--data", "data", "--backend", "torch", "--steps", "12", "--seed", "0",
             "--out", out.name, *MODEL, *path, cwd=data)
        runs.append(out)
    a, b = runs
    assert len(_losses(a)) == 12
    assert _losses(a) == _losses(b)
    assert _weights(a) == _weights(b)


@pytest.fixture()
def two_threads():
    """torch with two threads for one test (the process default is one, conftest.py)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _trainer(run_dir, fused):
    import numpy as np

    from minillm import ModelConfig
    from minillm.store.runtime import Runtime
    from minillm.train.tasks import CausalLMData
    from minillm.train.training import TrainConfig, Trainer
    ids = np.frombuffer(TEXT.encode("ascii"), dtype=np.uint8).astype(np.int64)
    rt = Runtime("torch", fused=fused)
    config = ModelConfig(vocab_size=128, block_size=64, d_model=64, n_heads=4, n_layers=2,
                         dropout=0.1)
    model = rt.prepare(rt.module.GPT(config, seed=0))
    tc = TrainConfig(steps=12, lr=3e-3, min_lr=3e-4, warmup_steps=2, eval_every=4,
                     checkpoint_every=4, seed=0)
    return Trainer(rt, model, tc.optimizer(rt, model), CausalLMData(ids, 64, 16, 0), tc,
                   run_dir=run_dir, progress=False)


@pytest.mark.parametrize("fused", [True, False], ids=["fast", "explicit"])
def test_resume_at_two_threads_ends_where_the_whole_run_does(tmp_path, two_threads, fused):
    """Stopped after 8 of 12 steps (Ctrl-C in the trainer) and resumed: the same losses
    and the same final loss as the run that was never stopped, with two threads."""
    whole = _trainer(tmp_path / "whole", fused).fit()
    part = _trainer(tmp_path / "part", fused)

    def stop(step, loss):
        if step == 8:
            raise KeyboardInterrupt
    part.on_step = stop
    with pytest.raises(KeyboardInterrupt):
        part.fit()
    resumed = _trainer(tmp_path / "part", fused).fit(resume=True)
    assert resumed.step == 12
    assert _losses(tmp_path / "part") == _losses(tmp_path / "whole")
    assert resumed.last_loss == whole.last_loss
    assert _weights(tmp_path / "part") == _weights(tmp_path / "whole")
