"""minillm.core.plots: every figure is a real, non-blank PNG, written atomically, and bad input
is refused with a ValueError before anything is drawn."""
import json
import struct
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from matplotlib.image import imread  # noqa: E402

from minillm.core import plots  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_real_png(path, min_bytes=5_000):
    """Magic bytes, a sane IHDR size, enough bytes, and pixels that are not all one colour."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG (starts {data[:8]!r})"
    width, height = struct.unpack(">II", data[16:24])  # IHDR: width, height (big-endian)
    assert 200 <= width <= 3000 and 200 <= height <= 3000, (width, height)
    assert len(data) >= min_bytes, f"{path} is only {len(data)} bytes"
    pixels = imread(path)
    assert pixels.shape[:2] == (height, width)
    assert pixels[..., :3].std() > 0.05, "the image is (nearly) a single colour"
    assert not list(path.parent.glob(f".{path.name}.*.tmp")), "a temporary file was left behind"


def _records(steps=120, eval_every=20, with_lr=True):
    rng = np.random.default_rng(0)
    out = []
    for s in range(steps):
        r = {"step": s, "train_loss": 4.0 * np.exp(-s / 40) + 0.5 + 0.05 * rng.random()}
        if with_lr:
            r["lr"] = 3e-4 * min(1.0, (s + 1) / 10)
        out.append(r)
        if s % eval_every == 0:
            out.append({"step": s, "val_loss": 4.0 * np.exp(-s / 40) + 0.7})
    return out


def test_loss_curves_from_jsonl_file(tmp_path):
    metrics = tmp_path / "run" / "metrics.jsonl"
    metrics.parent.mkdir()
    metrics.write_text("\n".join(json.dumps(r) for r in _records()) + "\n\n")
    out = plots.plot_loss_curves(metrics, tmp_path / "figs" / "loss.png", title="tiny run")
    assert out == tmp_path / "figs" / "loss.png"
    assert_real_png(out)


@pytest.mark.parametrize("records", [
    _records(with_lr=False),
    [{"iter": s, "loss": 3.0 / (s + 1)} for s in range(30)],           # aliases
    [{"step": s, "eval_loss": 2.0 - 0.1 * s} for s in range(0, 10)],  # validation only
])
def test_loss_curves_from_records(tmp_path, records):
    assert_real_png(plots.plot_loss_curves(iter(records), tmp_path / "loss.png", log_y=True))


def test_confusion_matrix_counts_and_normalised(tmp_path):
    cm = np.array([[50, 3, 1], [4, 40, 6], [0, 2, 44]])
    assert_real_png(plots.plot_confusion_matrix(cm, ["neg", "neu", "pos"], tmp_path / "cm.png"))
    assert_real_png(plots.plot_confusion_matrix(cm, None, tmp_path / "cm_norm.png", normalize=True))


def test_attention_map(tmp_path):
    tokens = "the cat sat on the mat".split()
    scores = np.random.default_rng(1).normal(size=(6, 6))
    scores[np.triu_indices(6, 1)] = -np.inf                  # causal
    w = np.exp(scores - scores.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    assert_real_png(plots.plot_attention(w, tokens, tmp_path / "att.png"))
    # one query (generation step): its label defaults to the last token
    assert_real_png(plots.plot_attention(w[-1:], tokens, tmp_path / "att_last.png"), min_bytes=3_000)


def test_attention_cost(tmp_path):
    Ts = [32, 64, 128, 256]
    secs = {"numpy": [1e-4, 4e-4, 1.7e-3, 7e-3], "torch": [5e-5, 1e-4, 3e-4, 1.1e-3]}
    assert_real_png(plots.plot_attention_cost(Ts, secs, tmp_path / "cost.png"))
    assert_real_png(plots.plot_attention_cost(Ts, secs["numpy"], tmp_path / "cost1.png"))


def test_write_is_atomic_when_saving_fails(tmp_path, monkeypatch):
    from matplotlib.figure import Figure
    out = tmp_path / "cm.png"
    out.write_bytes(b"previous figure")

    def broken_savefig(self, fh, **kwargs):
        fh.write(b"\x89PNG half a file")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        plots.plot_confusion_matrix([[1, 0], [0, 1]], None, out)
    assert out.read_bytes() == b"previous figure"   # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["cm.png"]  # and no temp file is left


def test_missing_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` fail
    with pytest.raises(ImportError, match=r"pip install 'minillm\[pipeline\]'"):
        plots.plot_attention_cost([1, 2], [1.0, 4.0], tmp_path / "x.png")


def test_plots_never_touch_pyplot(tmp_path):
    code = (
        "import sys, minillm.core.plots as p\n"
        f"p.plot_confusion_matrix([[1, 2], [3, 4]], ['a', 'b'], {str(tmp_path / 'cm.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cm.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("call, match", [
    (lambda d: plots.plot_loss_curves([], d / "x.png"), "no records"),
    (lambda d: plots.plot_loss_curves({"step": 1}, d / "x.png"), "path or an iterable of dicts, got dict"),
    (lambda d: plots.plot_loss_curves([{"loss": 1.0}], d / "x.png"), r"record 0 has no step.*got keys \['loss'\]"),
    (lambda d: plots.plot_loss_curves([{"step": 1, "acc": 0.5}], d / "x.png"), r"no loss in 1 records.*got keys \['acc', 'step'\]"),
    (lambda d: plots.plot_loss_curves([{"step": 1, "loss": 1.0}, 3], d / "x.png"), "record 1 must be a dict, got int"),
    (lambda d: plots.plot_confusion_matrix([[1, 2, 3], [4, 5, 6]], None, d / "x.png"), r"square \(C, C\) matrix, got shape \(2, 3\)"),
    (lambda d: plots.plot_confusion_matrix([[1, -2], [3, 4]], None, d / "x.png"), "counts >= 0, got min -2"),
    (lambda d: plots.plot_confusion_matrix([[1, 2], [3, 4]], ["a"], d / "x.png"), "1 names, expected 2"),
    (lambda d: plots.plot_attention(np.ones((2, 3)) / 3, ["a", "b"], d / "x.png"), r"2 entries, expected T_k=3"),
    (lambda d: plots.plot_attention(np.ones(3), ["a", "b", "c"], d / "x.png"), r"\(T_q, T_k\) matrix, got shape \(3,\)"),
    (lambda d: plots.plot_attention([[np.nan]], ["a"], d / "x.png"), "must be finite, got 1 non-finite"),
    (lambda d: plots.plot_attention(np.ones((2, 3)) / 3, list("abc"), d / "x.png", query_tokens=["q"]), "1 entries, expected T_q=2"),
    (lambda d: plots.plot_attention_cost([8, 16], [1.0], d / "x.png"), r"shape \(1,\), expected \(2,\)"),
    (lambda d: plots.plot_attention_cost([0, 16], [1.0, 2.0], d / "x.png"), r"positive sequence lengths, got \[0.0, 16.0\]"),
    (lambda d: plots.plot_attention_cost([8, 16], [1.0, 0.0], d / "x.png"), "positive finite times"),
    (lambda d: plots.plot_attention_cost([], [], d / "x.png"), "non-empty 1-D"),
])
def test_bad_input(tmp_path, call, match):
    with pytest.raises(ValueError, match=match):
        call(tmp_path)
    assert not (tmp_path / "x.png").exists()


def test_bad_jsonl_line_names_file_and_line(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 0, "loss": 2.0}\nnot json\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: expected one JSON object per line"):
        plots.plot_loss_curves(metrics, tmp_path / "x.png")
