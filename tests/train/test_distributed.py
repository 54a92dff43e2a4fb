"""Distributed data parallel on CPU: 2 processes (gloo) equal one process on the full batch.

Each rank takes its half of the global batch (``batch_size`` is global); each rank's
loss is its summed loss over the global count of counted targets and DDP sums the
gradients, which is the gradient of the full batch whatever the ranks' counts. Float64:
the only difference is the order of the additions (1e-12 relative). Every task's first
step is checked this way; the causal LM's run of a few steps too. Only rank 0 writes.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
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
         str(Path(__file__).parents[1] / "scripts" / "ddp_worker.py"), str(out), str(STEPS)],
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
    assert [json.loads(r)["step"] for r in records] == list(range(1, STEPS + 1))     # once each, not twice
    assert (ddp_run / "run" / "checkpoints" / "last" / "model.safetensors").exists()


# ---------------------------------------------------------------- every task (issue 28, item 2)

import ddp_tasks_worker  # noqa: E402


@pytest.fixture(scope="module")
def ddp_tasks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_tasks")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(Path(__file__).parents[1] / "scripts" / "ddp_tasks_worker.py"), str(out)],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("task", ddp_tasks_worker.TASKS)
def test_a_distributed_step_of_every_task_is_the_global_batch_step(task, ddp_tasks):
    """Two ranks, each with half of the global batch (its own masks, its own rows of the
    translation and QA sources), give the single-process loss and gradient of the whole
    batch: the loss normalised by the global count of counted targets, the gradients
    summed. Tolerance: rtol 1e-10, atol 1e-13, float64 (sums of the same terms grouped
    by rank; measured <= 3e-16)."""
    single = ddp_tasks_worker.first_step(task, Runtime("torch"))
    ranks = [np.load(ddp_tasks / f"{task}.rank{r}.npz") for r in range(2)]
    assert sum(int(r["count"]) for r in ranks) == single["count"], "the ranks split the global batch"
    for r, got in enumerate(ranks):
        np.testing.assert_allclose(float(got["loss"]), single["loss"], rtol=1e-12, err_msg=f"loss, rank {r}")
        assert set(got.files) - {"loss", "count"} == set(single["grads"])
        for name, g in single["grads"].items():
            np.testing.assert_allclose(got[name], g, rtol=1e-10, atol=1e-13, err_msg=f"{task} rank {r}: {name}")


def test_the_ranks_means_mean_is_not_the_global_gradient():
    """Why the global count: where the ranks count different numbers of targets (here
    masked tokens: 4 and 3 in the masked-LM batch of step 0), the mean of the two ranks' mean gradients (DDP's average)
    differs from the global batch's gradient. This keeps the test above from passing
    vacuously."""
    task = "masked_lm"
    single = ddp_tasks_worker.first_step(task, Runtime("torch"))
    halves = [ddp_tasks_worker.first_step(task, Runtime("torch"), part=(r, 2)) for r in range(2)]
    assert halves[0]["count"] != halves[1]["count"]
    worst = max(float(np.max(np.abs((halves[0]["grads"][n] + halves[1]["grads"][n]) / 2 - g)))
                for n, g in single["grads"].items())
    assert worst > 1e-4, f"{task}: the mean of the ranks' means is within {worst:.1e} of the global gradient"


@pytest.mark.parametrize("task", ddp_tasks_worker.TASKS)
def test_the_ranks_batches_together_are_the_single_process_batch(task):
    """``batch_size`` is the global batch: each of 2 ranks takes half of its rows, masks
    included (drawn once for the global batch), and the two halves are the rows of the
    single-process batch. No process group is needed: the sources read only the rank."""
    def rows(rank, world_size, step):
        rt = Runtime("torch", rank=rank, world_size=world_size)
        inputs = ddp_tasks_worker._inputs(task, rt)
        from minillm.train.entry import task_spec
        batch = task_spec(task).setup(inputs).train.batch(step)
        key = "targets" if "targets" in batch else ("labels" if "labels" in batch else "start_positions")
        idx, target = np.asarray(batch["idx"]), np.asarray(batch[key]).reshape(len(batch["idx"]), -1)
        real = np.asarray(batch.get("attention_mask", np.ones(idx.shape, bool)))   # padding trimmed per rank
        return sorted((tuple(idx[i][real[i]].tolist()), tuple(target[i].tolist())) for i in range(len(idx)))

    for step in (0, 3):
        single = rows(0, 1, step)
        halves = [rows(r, 2, step) for r in range(2)]
        assert len(single) == ddp_tasks_worker.GLOBAL_BATCH and all(len(h) == len(single) // 2 for h in halves)
        assert sorted(halves[0] + halves[1]) == sorted(single), f"{task}, step {step}"


def test_a_batch_the_ranks_cannot_share_is_refused_naming_both():
    from minillm.train.tasks import CausalLMData
    with pytest.raises(ValueError, match="global batch size 15 is not divisible by the world size 2"):
        CausalLMData(np.arange(100), 8, 15, rank=1, world_size=2)
