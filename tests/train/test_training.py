"""The trainer: exact resume, non-finite steps, Ctrl-C, metrics, plots, evaluation.

Runs use tiny models on the embedded synthetic language so each takes a second or two.
Exactness: within one backend a resumed run does the same operations on the same arrays
as an uninterrupted one, so the losses must be equal bit for bit.
"""
import json
import math

import numpy as np
import pytest

from minillm import ModelConfig
from minillm.data import synthetic_language
from minillm.store.runtime import Runtime
from minillm.train.tasks import CausalLMData, causal_lm_eval_batches
from minillm.train.training import TrainConfig, Trainer, TrainingDiverged

BACKENDS = ["numpy", "torch"]


@pytest.fixture(scope="module")
def corpus():
    lang = synthetic_language(4000, order=1, alphabet_size=6, seed=3)
    return np.asarray(lang.ids, dtype=np.int64), lang


def make_trainer(backend, ids, run_dir, steps=12, lr=1e-2, seed=0, **kw):
    rt = Runtime(backend)
    cfg = ModelConfig(vocab_size=int(ids.max()) + 1, block_size=8, d_model=16, n_heads=2, n_layers=1,
                      dropout=0.1)
    model = rt.prepare(rt.module.GPT(cfg, seed=seed))
    tc = TrainConfig(steps=steps, lr=lr, min_lr=lr / 10, warmup_steps=2, eval_every=4, checkpoint_every=4,
                     seed=seed, **kw)
    opt = rt.module.AdamW(list(model.parameters()), lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay)
    data = CausalLMData(ids[:3000], 8, 4, seed)
    return Trainer(rt, model, opt, data, tc, eval_data=causal_lm_eval_batches(ids[3000:3400], 8, 8),
                   run_dir=run_dir, progress=False)


def losses_of(run_dir):
    return [r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]


@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_continues_exactly(backend, corpus, tmp_path):
    ids, _ = corpus
    full = make_trainer(backend, ids, tmp_path / "full").fit()
    # the same run, stopped after 8 steps (a checkpoint every 4) and resumed by a fresh process-like trainer
    part = make_trainer(backend, ids, tmp_path / "part")

    def stop(step, loss):
        if step == 8:
            raise KeyboardInterrupt
    part.on_step = stop
    with pytest.raises(KeyboardInterrupt):
        part.fit()
    assert json.loads((tmp_path / "part/checkpoints/last/trainer_state.json").read_text())["step"] == 8
    resumed = make_trainer(backend, ids, tmp_path / "part").fit(resume=True)
    assert resumed.step == 12
    assert losses_of(tmp_path / "full") == losses_of(tmp_path / "part"), "resumed losses differ"
    assert resumed.last_loss == full.last_loss


def test_resuming_a_finished_run_says_so_and_changes_nothing(corpus, tmp_path, caplog):
    ids, _ = corpus
    make_trainer("numpy", ids, tmp_path).fit()
    metrics = (tmp_path / "metrics.jsonl").read_bytes()
    weights = (tmp_path / "checkpoints/last/model.safetensors").read_bytes()
    with caplog.at_level("WARNING", logger="minillm"):
        result = make_trainer("numpy", ids, tmp_path).fit(resume=True)
    assert result.step == 12
    assert f"the run in {tmp_path} is finished: it is at step 12 of 12 already" in caplog.text
    assert (tmp_path / "metrics.jsonl").read_bytes() == metrics
    assert (tmp_path / "checkpoints/last/model.safetensors").read_bytes() == weights


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_folder_has_metrics_checkpoints_and_plot(backend, corpus, tmp_path):
    ids, _ = corpus
    result = make_trainer(backend, ids, tmp_path).fit()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 13))   # steps done, as the checkpoints count
    for r in records:
        assert {"step", "loss", "lr", "grad_norm", "tokens_per_s"} <= set(r)
        assert math.isfinite(r["loss"]) and r["grad_norm"] > 0 and r["tokens_per_s"] > 0
    evals = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in evals] == [4, 8, 12]
    assert result.best_val == min(r["val_loss"] for r in evals)
    for name in ("last", "best"):
        assert (tmp_path / "checkpoints" / name / "model.safetensors").stat().st_size > 0
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # warmup then cosine: the rate rises to its peak and ends at min_lr
    lrs = [r["lr"] for r in records]
    assert lrs[0] < lrs[1] == pytest.approx(1e-2) and lrs[-1] == pytest.approx(1e-3)


class _NaNLoss:
    """Stands in for a loss whose value came out NaN; its backward is the real one."""

    def __init__(self, loss):
        self.loss = loss

    def item(self):
        return float("nan")

    def backward(self):
        self.loss.backward()


def _poison(trainer, bad_steps):
    """On the given steps the loss the trainer sees is NaN: it must skip the update."""
    original = trainer._ddp_model

    def model(**kw):
        logits, loss = original(**kw)
        return logits, (_NaNLoss(loss) if trainer.step in bad_steps else loss)

    trainer._ddp_model = model


@pytest.mark.parametrize("backend", ["numpy"])
def test_non_finite_steps_are_skipped_and_counted(backend, corpus, tmp_path):
    ids, _ = corpus
    trainer = make_trainer(backend, ids, tmp_path)
    before = {n: np.array(p.data, copy=True) for n, p in trainer.model.named_parameters()}
    _poison(trainer, {0, 5})
    result = trainer.fit()
    assert result.skipped_steps == 2
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r.get("skipped")] == [1, 6]   # the first and the sixth
    assert all(np.isfinite(p.data).all() for p in trainer.model.parameters())
    assert any(not np.array_equal(before[n], p.data) for n, p in trainer.model.named_parameters())


def test_too_many_bad_steps_stop_with_last_good_checkpoint(corpus, tmp_path):
    ids, _ = corpus
    trainer = make_trainer("numpy", ids, tmp_path, max_bad_steps=3)
    _poison(trainer, {5, 6, 7, 8, 9})
    with pytest.raises(TrainingDiverged, match=r"3 steps in a row .* The last checkpoint, .*last, is of step 4"):
        trainer.fit()
    state = json.loads((tmp_path / "checkpoints/last/trainer_state.json").read_text())
    assert state["step"] == 4                      # saved before the bad steps, untouched after
    from minillm.store import model_io
    model, _ = model_io.load_model(tmp_path / "checkpoints/last", "numpy")
    assert all(np.isfinite(p.data).all() for p in model.parameters())


def test_ctrl_c_saves_a_checkpoint(corpus, tmp_path):
    ids, _ = corpus
    trainer = make_trainer("numpy", ids, tmp_path, steps=12)

    def interrupt(step, loss):
        if step == 6:
            raise KeyboardInterrupt
    trainer.on_step = interrupt
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    state = json.loads((tmp_path / "checkpoints/last/trainer_state.json").read_text())
    assert state["step"] == 6


def test_train_config_rejects_bad_values():
    with pytest.raises(ValueError, match="warmup_steps must be in"):
        TrainConfig(steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match="min_lr"):
        TrainConfig(lr=1e-3, min_lr=1e-2)
    with pytest.raises(ValueError, match="steps must be"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        TrainConfig(batch_size=0)


def test_recipe_is_the_default_policy():
    """warmup 5% of the steps, min_lr = lr / 10, evaluation and checkpoints every steps / 4;
    every rule yields to an explicit value."""
    tc = TrainConfig.recipe(400, 2e-3, batch_size=32, seed=3)
    assert (tc.steps, tc.lr, tc.min_lr, tc.warmup_steps, tc.eval_every, tc.checkpoint_every) == \
        (400, 2e-3, pytest.approx(2e-4, rel=1e-15), 20, 100, 100)
    assert (tc.batch_size, tc.seed, tc.weight_decay, tc.grad_clip) == (32, 3, 0.01, 1.0)
    assert TrainConfig().batch_size == 16 and TrainConfig.recipe(10, 1e-3).batch_size == 16
    # tiny runs: at least one warmup step, fewer than steps; at least one step between evaluations
    assert (TrainConfig.recipe(1, 1e-3).warmup_steps, TrainConfig.recipe(1, 1e-3).eval_every) == (0, 1)
    assert (TrainConfig.recipe(3, 1e-3).warmup_steps, TrainConfig.recipe(3, 1e-3).eval_every) == (1, 1)
    assert TrainConfig.recipe(10, 1e-3, warmup_steps=50).warmup_steps == 9
    given = TrainConfig.recipe(100, 1e-3, warmup_steps=0, eval_every=7, checkpoint_every=50, min_lr=1e-3,
                               weight_decay=0.0, grad_clip=None)
    assert (given.warmup_steps, given.eval_every, given.checkpoint_every, given.min_lr) == (0, 7, 50, 1e-3)
    assert (given.weight_decay, given.grad_clip) == (0.0, None)


@pytest.mark.parametrize("backend", BACKENDS)
def test_train_config_builds_the_adamw_it_describes(backend):
    rt = Runtime(backend)
    model = rt.prepare(rt.module.GPT(ModelConfig(vocab_size=11, block_size=8, d_model=8, n_heads=2, n_layers=1)))
    tc = TrainConfig(steps=10, lr=2e-3, min_lr=0.0, warmup_steps=0, weight_decay=0.05, betas=(0.8, 0.9))
    opt = tc.optimizer(rt, model)
    assert type(opt) is rt.module.AdamW
    assert (opt.lr, tuple(opt.betas), opt.weight_decay) == (2e-3, (0.8, 0.9), 0.05)
    assert len(opt.params) == len(list(model.parameters()))


def test_the_trainers_collaborators(tmp_path):
    """MetricsFiles appends one record a line and, on resume, keeps only the steps before
    the checkpoint's; disabled (no run folder, or not rank 0) it writes nothing, nor do the
    Checkpoints; one rank's Distribution is the identity."""
    from minillm.train.collaborators import Checkpoints, Distribution, MetricsFiles
    metrics = MetricsFiles(tmp_path, enabled=True)
    for step in range(1, 6):
        metrics.append({"step": step, "loss": float(step)})
    metrics.truncate(3)             # resumed from a checkpoint of 3 steps done: steps 4 and 5 are done again
    assert [json.loads(line)["step"] for line in metrics.path.read_text().splitlines()] == [1, 2, 3]
    silent = MetricsFiles(tmp_path / "other", enabled=False)
    silent.append({"step": 0})
    silent.truncate(0)
    rt = Runtime("numpy")
    model = rt.module.GPT(ModelConfig(vocab_size=11, block_size=8, d_model=8, n_heads=2, n_layers=1))
    Checkpoints(tmp_path / "other", enabled=False).save("last", model, None, step=1, tokenizer=None, extra={})
    Checkpoints(None, enabled=True).save("last", model, None, step=1, tokenizer=None, extra={})
    assert not (tmp_path / "other").exists()
    one = Distribution(rt)
    assert one.wrap(model) is model and one.sum(2.5) == 2.5 and not one.active
    assert one.share(2.5, 3) == 2.5                        # one rank: its mean is the global mean
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        Checkpoints(tmp_path, enabled=True).resume(model, None)
