"""loss.png says what the task's loss is: a language model's loss per token with its
perplexity axis; a classifier's loss per example, no perplexity, and its validation
accuracy in a panel of its own. Checked on the matplotlib figure's axes (their labels),
and through a tiny training run of each kind (the task's ``loss_per`` reaches the plot)."""
import numpy as np
import pytest

pytest.importorskip("matplotlib")

from minillm import ModelConfig
from minillm.core import plots
from minillm.data import CharTokenizer, Splits, WordTokenizer, sentiment
from minillm.train.entry import train
from minillm.train.run_config import RunConfig
from minillm.train.spec import task_spec
from minillm.train.training import TrainConfig

LM_RECORDS = [{"step": 1, "loss": 3.0, "lr": 1e-3}, {"step": 2, "loss": 2.5, "lr": 1e-3, "val_loss": 2.6}]
CLS_RECORDS = [{"step": 1, "loss": 0.7, "lr": 1e-3},
               {"step": 2, "loss": 0.5, "lr": 1e-3, "val_loss": 0.6, "val_accuracy": 0.75}]


def labels(fig):
    """Every y label of the figure, secondary axes included (a perplexity axis is a child
    of the loss axes), and the x label of the bottom panel."""
    ys = []
    for ax in fig.axes:
        ys.append(ax.get_ylabel())
        ys += [child.get_ylabel() for child in ax.child_axes]
    return ys, fig.axes[-1].get_xlabel()


def test_a_language_models_figure_has_tokens_and_perplexity():
    ys, x = labels(plots.loss_figure(LM_RECORDS))
    assert ys == ["loss (nats / token)", "perplexity", "learning rate"] and x == "step"


def test_a_classifiers_figure_has_examples_and_accuracy_and_no_perplexity():
    fig = plots.loss_figure(CLS_RECORDS, loss_per="example")
    ys, x = labels(fig)
    assert ys == ["loss (nats / example)", "validation accuracy", "learning rate"] and x == "step"
    line, = fig.axes[1].get_lines()
    assert list(line.get_xdata()) == [2.0] and list(line.get_ydata()) == [0.75]


def test_no_accuracy_panel_without_accuracy_and_a_bad_unit_is_refused():
    ys, _ = labels(plots.loss_figure([{"step": 1, "loss": 1.0}], loss_per="example"))
    assert ys == ["loss (nats / example)"]
    with pytest.raises(ValueError, match=r"loss_per must be one of \('token', 'example'\), got 'word'"):
        plots.loss_figure(LM_RECORDS, loss_per="word")


def test_each_task_declares_what_its_loss_is_a_mean_over():
    assert task_spec("classification").loss_per == "example"
    assert task_spec("causal_lm").loss_per == task_spec("masked_lm").loss_per == "token"


def test_training_plots_for_its_task(tmp_path, monkeypatch):
    """A tiny run of each kind: the trainer hands its task's ``loss_per`` to the plot."""
    seen = {}
    real = plots.plot_loss_curves

    def spy(metrics, out_png, **kw):
        seen[kw["title"].split()[0]] = labels(plots.loss_figure(metrics, loss_per=kw["loss_per"]))[0]
        return real(metrics, out_png, **kw)
    monkeypatch.setattr(plots, "plot_loss_curves", spy)
    data = sentiment(n=200, seed=0)
    tok = WordTokenizer.train("\n".join(data.train.texts), max_size=200)
    cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=24, d_model=16, n_heads=2, n_layers=1)
    train("classification", tmp_path / "cls", RunConfig(cfg, TrainConfig.recipe(4, 1e-2, batch_size=8),
                                                         backend="numpy"), data=data, tokenizer=tok, progress=False)
    text = "the cat sat on the mat. " * 60
    ctok = CharTokenizer.train(text)
    ids = np.asarray(ctok.encode(text), dtype=np.int64)
    cfg = ModelConfig(vocab_size=ctok.vocab_size, block_size=8, d_model=16, n_heads=2, n_layers=1)
    train("causal_lm", tmp_path / "lm", RunConfig(cfg, TrainConfig.recipe(4, 1e-2, batch_size=4), backend="numpy"),
          data=Splits(ids[:1000], ids[1000:1200], ids[1200:1400]), tokenizer=ctok, progress=False)
    assert seen["classification"] == ["loss (nats / example)", "validation accuracy", "learning rate"]
    assert seen["causal_lm"] == ["loss (nats / token)", "perplexity", "learning rate"]
    assert (tmp_path / "cls" / "loss.png").is_file() and (tmp_path / "lm" / "loss.png").is_file()
