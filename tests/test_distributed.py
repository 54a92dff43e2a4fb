"""Distributed data parallel on CPU: 2 processes (gloo) equal one process on the full batch.

Each rank takes its half of the global batch; DDP averages the gradients, which for a
mean loss over equally many tokens per rank is the gradient of the full batch. Float64:
the only difference is the order of one addition (1e-12 relative). Only rank 0 writes.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
import ddp_worker  # noqa: E402

from minillm.store.runtime import Runtime  # noqa: E402

STEPS = 3
pytestmark = pytest.mark.slow   # two gloo processes and their reference run: ~25 s


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(Path(__file__).parent / "scripts" / "ddp_worker.py"), str(out), str(STEPS)],
        capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    trainer = ddp_worker.build(Runtime("torch"), STEPS, out / "run")
    grads = ddp_worker.first_step_grads(trainer)
    trainer.fit()
    return grads, {n: p.detach().numpy() for n, p in trainer.model.named_parameters()}, out


def test_two_processes_give_the_full_batch_gradient(ddp_run, single_run):
    grads, _, _ = single_run
    ddp = np.load(ddp_run / "grads.npz")
    assert set(ddp.files) == set(grads)
    for name, g in grads.items():
        np.testing.assert_allclose(ddp[name], g, rtol=1e-12, atol=1e-15, err_msg=name)


def test_two_processes_train_like_one(ddp_run, single_run):
    _, params, single_out = single_run
    final = np.load(ddp_run / "final.npz")
    for name, p in params.items():
        np.testing.assert_allclose(final[name], p, rtol=1e-9, atol=1e-12, err_msg=name)
    losses = lambda d: [json.loads(l)["loss"] for l in (d / "run" / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    np.testing.assert_allclose(losses(ddp_run), losses(single_out), rtol=1e-12)


def test_only_rank_zero_writes(ddp_run):
    records = (ddp_run / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in records] == list(range(STEPS))     # once each, not twice
    assert (ddp_run / "run" / "checkpoints" / "last" / "model.safetensors").exists()
