"""Model checkpoints and bad input at the models' entry points, in both backends.

- what one backend saves the other loads (weights, optimizer, step, dropout RNG);
- a checkpoint of another configuration, a truncated or a corrupted file: ValueError;
- a save that fails midway leaves the previous checkpoint loadable;
- token ids >= vocab_size, negative or non-integer ids, sequences longer than
  block_size, targets of the wrong shape: ValueError naming expected and got.
"""
import dataclasses
import os

import numpy as np
import pytest

import minillm.reference as R
from minillm.core.config import ModelConfig
from minillm.store import model_io

from model_helpers import to_np

try:
    import minillm.torch_backend as T
    BACKENDS = [R, T]
except ImportError:  # pragma: no cover
    BACKENDS = [R]

IDS = [b.__name__.rsplit(".", 1)[-1] for b in BACKENDS]
CONFIG = ModelConfig(vocab_size=17, block_size=8, d_model=16, n_heads=2, n_layers=1,
                     dropout=0.1)


def weights(model):
    return {n: to_np(p) if hasattr(p, "detach") else p.data for n, p in model.named_parameters()}


def trained(backend, steps=2, seed=0):
    model = backend.GPT(CONFIG, seed=seed)
    opt = backend.Adam(model.parameters(), lr=1e-2)
    x = np.random.default_rng(seed).integers(0, 17, (2, 8))
    for _ in range(steps):
        _, loss = model(x, x)
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model, opt


@pytest.mark.parametrize("saver", BACKENDS, ids=IDS)
@pytest.mark.parametrize("loader", BACKENDS, ids=IDS)
def test_what_one_backend_saves_the_other_loads(saver, loader, tmp_path):
    model, opt = trained(saver)
    model.dropout_rng.random(3)  # move the dropout stream on: its state must travel
    model_io.save_checkpoint(tmp_path / "ck", model, opt, step=2, data_state={"position": 64},
                             extra={"note": "hello"})
    assert not any(name.endswith((".pt", ".pkl", ".pickle")) for name in os.listdir(tmp_path / "ck"))
    loaded, ckpt = model_io.load_model(tmp_path / "ck", "numpy" if loader is R else "torch")
    assert type(loaded).__name__ == "GPT" and loaded.config == CONFIG
    for name, w in weights(model).items():
        np.testing.assert_array_equal(weights(loaded)[name], w, err_msg=name)
    assert ckpt.step == 2 and ckpt.data_state == {"position": 64} and ckpt.extra["note"] == "hello"
    assert loaded.dropout_rng.bit_generator.state == model.dropout_rng.bit_generator.state
    other_opt = loader.Adam(loaded.parameters())
    other_opt.load_state_dict(ckpt.optimizer)
    assert other_opt.state_dict()["step"] == 2


def test_classifier_checkpoint_keeps_its_head_and_pooling(tmp_path):
    clf = R.SequenceClassifier(CONFIG, n_classes=3, pooling="cls", seed=2)
    model_io.save_checkpoint(tmp_path / "clf", clf)
    loaded, _ = model_io.load_model(tmp_path / "clf")
    assert (loaded.n_classes, loaded.pooling) == (3, "cls")
    np.testing.assert_array_equal(loaded.head.W.data, clf.head.W.data)


@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
def test_classifier_starts_from_a_pretrained_encoder(backend):
    encoder = backend.TransformerEncoder(CONFIG, seed=5)
    clf = backend.SequenceClassifier(CONFIG, n_classes=2, seed=9)
    head_before = {n: w.copy() for n, w in weights(clf).items() if n.startswith("head.")}
    clf.load_encoder_state(encoder.state_dict())
    w_clf, w_enc = weights(clf), weights(encoder)
    for name in w_clf:
        if name.startswith("head."):
            np.testing.assert_array_equal(w_clf[name], head_before[name])
        else:
            np.testing.assert_array_equal(w_clf[name], w_enc[name], err_msg=name)
    other = backend.TransformerEncoder(dataclasses.replace(CONFIG, d_model=8), seed=5)
    with pytest.raises(ValueError, match="wrong shape"):
        clf.load_encoder_state(other.state_dict())


@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
def test_a_checkpoint_of_another_config_is_refused(backend, tmp_path):
    model, opt = trained(R)
    model_io.save_checkpoint(tmp_path / "ck", model, opt, step=2)
    other = backend.GPT(dataclasses.replace(CONFIG, d_model=8, n_heads=2))
    with pytest.raises(ValueError, match="another configuration: d_model expected 8, got 16"):
        model_io.resume(tmp_path / "ck", other)
    with pytest.raises(ValueError, match=r"wrong shape .*expected \(17, 8\), got \(17, 16\)"):
        other.load_state_dict(model.state_dict())
    deeper = backend.GPT(dataclasses.replace(CONFIG, n_layers=2))
    with pytest.raises(ValueError, match="missing .*blocks.1"):
        deeper.load_state_dict(model.state_dict())
    encoder = backend.TransformerEncoder(CONFIG)
    with pytest.raises(ValueError, match="expected a checkpoint of class='TransformerEncoder', got 'GPT'"):
        model_io.resume(tmp_path / "ck", encoder)


@pytest.mark.parametrize("damage", ["truncate", "corrupt", "delete"])
def test_a_truncated_or_corrupted_checkpoint_is_a_clear_error(damage, tmp_path):
    model, opt = trained(R)
    folder = model_io.save_checkpoint(tmp_path / "ck", model, opt, step=2)
    path = folder / "model.safetensors"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "corrupt":
        path.write_bytes(data[:-5] + bytes(5 * [0x41]))
    else:
        path.unlink()
    with pytest.raises(ValueError, match="model.safetensors"):
        model_io.load_model(folder)
    with pytest.raises(ValueError, match="model.safetensors"):
        model_io.resume(folder, R.GPT(CONFIG))


def test_a_save_that_fails_midway_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model, opt = trained(R, steps=1)
    model_io.save_checkpoint(tmp_path / "ck", model, opt, step=1)
    first = {n: w.copy() for n, w in weights(model).items()}
    model2, opt2 = trained(R, steps=3)

    import minillm.store.checkpoint as checkpoint
    real_write = checkpoint._write_file
    calls = {"n": 0}

    def failing_write(path, data):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full (simulated)")
        real_write(path, data)

    monkeypatch.setattr(checkpoint, "_write_file", failing_write)
    with pytest.raises(OSError, match="disk full"):
        model_io.save_checkpoint(tmp_path / "ck", model2, opt2, step=3)
    monkeypatch.setattr(checkpoint, "_write_file", real_write)
    loaded, ckpt = model_io.load_model(tmp_path / "ck")
    assert ckpt.step == 1
    for name, w in first.items():
        np.testing.assert_array_equal(loaded.state_dict()[name], w)


# ----------------------------------------------------------------------------------------
# bad input at the entry points

@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
@pytest.mark.parametrize("kind", ["GPT", "TransformerEncoder", "SequenceClassifier"])
def test_bad_input_is_a_value_error_naming_expected_and_got(backend, kind):
    model = getattr(backend, kind)(CONFIG)
    good = np.zeros((2, 4), dtype=np.int64)
    with pytest.raises(ValueError, match=r"idx in \[0, 17\) \(vocab_size=17\).*got 17"):
        model(np.full((2, 4), 17))
    with pytest.raises(ValueError, match=r"idx in \[0, 17\).*got -1"):
        model(np.full((2, 4), -1))
    with pytest.raises(ValueError, match=r"block_size=8 positions, got shape \(2, 9\)"):
        model(np.zeros((2, 9), dtype=np.int64))
    with pytest.raises(ValueError, match="idx to have an integer dtype, got float"):
        model(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"idx to have 2 dimension\(s\), got 1"):
        model(np.zeros(4, dtype=np.int64))
    if kind == "SequenceClassifier":
        with pytest.raises(ValueError, match=r"labels of shape \(2,\).*got \(2, 4\)"):
            model(good, labels=good)
        with pytest.raises(ValueError, match=r"labels in \[0, 2\).*got 5"):
            model(good, labels=np.array([0, 5]))
    else:
        with pytest.raises(ValueError, match=r"targets of shape \(2, 4\).*got \(2, 3\)"):
            model(good, np.zeros((2, 3), dtype=np.int64))
        with pytest.raises(ValueError, match=r"targets in \[0, 17\).*got 20"):
            model(good, np.full((2, 4), 20))
    if kind != "GPT":
        with pytest.raises(ValueError, match=r"attention_mask of shape \(2, 4\).*got \(2, 3\)"):
            model(good, attention_mask=np.ones((2, 3), dtype=bool))


def test_the_loss_backpropagates_once_and_only_for_the_latest_forward():
    model = R.GPT(CONFIG)
    x = np.zeros((1, 4), dtype=np.int64)
    _, loss = model(x, x)
    loss.backward()
    with pytest.raises(RuntimeError, match="already called"):
        loss.backward()
    _, old = model(x, x)
    model(x, x)
    with pytest.raises(RuntimeError, match="another forward"):
        old.backward()
