"""Checkpoint folders and the NumPy safetensors reader/writer.

What is checked: every field and dtype comes back exactly; the ``safetensors`` package
reads our files and we read its; damaged, truncated or missing files give a ValueError
naming the file; an interrupted save leaves the previous (or the new) checkpoint
loadable; an optimizer saved from one backend resumes in the other; nothing in
``minillm/`` unpickles.
"""
import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import given
from hypothesis import strategies as st

import minillm
import minillm.store.checkpoint as ckpt
from minillm.core.config import ModelConfig
from minillm.store import safetensors_io
from minillm.store.checkpoint import (
    check_state_dict, generator_from_state, generator_state, load_checkpoint, save_checkpoint,
)

DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.int16, np.int8,
          np.uint8, np.uint16, np.uint32, np.uint64, np.bool_]


def some_arrays(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "wte.weight": rng.standard_normal((7, 4)).astype(np.float32),
        "h.0.attn.W_q": rng.standard_normal((4, 4)),                      # float64
        "half": rng.standard_normal((3,)).astype(np.float16),
        "ids": rng.integers(-5, 5, size=(2, 3)),                           # int64
        "ids32": rng.integers(0, 9, size=(5,)).astype(np.int32),
        "mask": rng.random((2, 2)) > 0.5,
        "bytes": rng.integers(0, 256, size=(4,)).astype(np.uint8),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "strided": rng.standard_normal((4, 6))[:, ::2],                    # not contiguous
    }


def full_checkpoint(folder, seed=0, step=12):
    """A checkpoint with every field filled, and the arguments it was saved with."""
    from minillm.reference import Adam, Parameter
    arrays = some_arrays(seed)
    params = [Parameter(arrays["wte.weight"].copy()), Parameter(arrays["h.0.attn.W_q"].copy())]
    opt = Adam(params, lr=3e-4, weight_decay=0.1)
    for p in params:
        p.grad = np.ones_like(p.data)
    opt.step()
    rng = np.random.default_rng(seed)
    rng.random(3)
    kwargs = dict(
        weights=arrays, config=ModelConfig(vocab_size=7, d_model=4, n_heads=1).to_dict(),
        optimizer=opt.state_dict(), step=step,
        rng_state={"data": generator_state(rng),
                   "dropout": generator_state(np.random.Generator(np.random.MT19937(seed)))},
        data_state={"epoch": 1, "position": 12345, "order": [3, 1, 2]},
        tokenizer={"type": "char", "vocab": ["<pad>", "a", "b", "é"]},
        extra={"losses": [2.5, 2.25, 0.1 + 0.2], "note": "üñí"},
    )
    save_checkpoint(folder, **kwargs)
    return kwargs


def assert_same(a, b, where="value"):
    """Deep equality; arrays must match in dtype, shape and every bit; tuples may come
    back as lists."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, where
        assert a.tobytes() == np.ascontiguousarray(b).tobytes(), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"


def hidden_leftovers(parent):
    return sorted(p.name for p in Path(parent).iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------- round trips

def test_round_trip_of_every_field(tmp_path):
    saved = full_checkpoint(tmp_path / "ckpt")
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.path == tmp_path / "ckpt"
    for field in ("weights", "config", "optimizer", "step", "rng_state", "data_state",
                  "tokenizer", "extra"):
        assert_same(saved[field], getattr(loaded, field), field)
    assert loaded.weights["wte.weight"].dtype == np.float32
    assert loaded.weights["wte.weight"].flags.writeable
    assert ModelConfig.from_dict(loaded.config) == ModelConfig(vocab_size=7, d_model=4, n_heads=1)
    assert hidden_leftovers(tmp_path) == []


def test_optional_fields_may_be_left_out(tmp_path):
    save_checkpoint(tmp_path / "c", weights={"w": np.ones(2)}, config={})
    loaded = load_checkpoint(tmp_path / "c")
    assert loaded.optimizer is None and loaded.tokenizer is None and loaded.rng_state is None
    assert loaded.step == 0
    assert sorted(os.listdir(tmp_path / "c")) == ["config.json", "manifest.json",
                                                   "model.safetensors", "trainer_state.json"]


def test_saving_over_a_checkpoint_replaces_it(tmp_path):
    full_checkpoint(tmp_path / "ckpt", seed=0, step=1)
    full_checkpoint(tmp_path / "ckpt", seed=1, step=2)
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.step == 2
    assert_same(some_arrays(1), loaded.weights)
    assert hidden_leftovers(tmp_path) == []


@pytest.mark.parametrize("bit_generator", ["PCG64", "MT19937", "Philox", "SFC64"])
def test_generator_state_round_trip_gives_the_same_draws(tmp_path, bit_generator):
    rng = np.random.Generator(getattr(np.random, bit_generator)(1234))
    rng.normal(size=17)
    save_checkpoint(tmp_path / "c", weights={}, config={}, rng_state={"data": generator_state(rng)})
    expected = rng.random(5), rng.integers(0, 100, 5)
    restored = generator_from_state(load_checkpoint(tmp_path / "c").rng_state["data"])
    got = restored.random(5), restored.integers(0, 100, 5)
    np.testing.assert_array_equal(expected[0], got[0])
    np.testing.assert_array_equal(expected[1], got[1])
    with pytest.raises(ValueError, match=r"expected bit_generator in .*got 'os.system'"):
        generator_from_state({"bit_generator": "os.system"})


# ---------------------------------------------------------------- safetensors format

@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_safetensors_interoperates_with_the_package(tmp_path, dtype):
    rng = np.random.default_rng(0)
    arrays = {"a": (rng.standard_normal((3, 5)) * 50).astype(dtype),
              "b.c": (rng.standard_normal((2,)) * 50).astype(dtype),
              "s": np.array(1, dtype=dtype)}
    ours, theirs = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors"
    safetensors_io.save_file(arrays, ours, metadata={"format": "np"})
    safetensors.numpy.save_file(arrays, str(theirs), metadata={"format": "np"})
    assert_same(arrays, dict(sorted(safetensors.numpy.load_file(str(ours)).items())), "package reads ours")
    assert_same(arrays, dict(sorted(safetensors_io.load_file(theirs).items())), "we read the package's")
    _, metadata = safetensors_io.from_bytes(theirs.read_bytes())
    assert metadata == {"format": "np"}


@given(st.lists(st.tuples(st.sampled_from(DTYPES),
                          st.lists(st.integers(0, 4), max_size=3)), min_size=0, max_size=5),
       st.integers(0, 2**32 - 1))
def test_safetensors_round_trip_of_drawn_arrays(specs, seed):
    rng = np.random.default_rng(seed)
    arrays = {f"t{i}": np.asarray(rng.standard_normal(shape) * 100).astype(dtype)
              for i, (dtype, shape) in enumerate(specs)}
    data = safetensors_io.to_bytes(arrays)
    assert_same(arrays, safetensors_io.from_bytes(data)[0])
    assert_same(arrays, dict(sorted(safetensors.numpy.load(data).items(),
                                    key=lambda kv: int(kv[0][1:]))))


def test_safetensors_rejects_what_it_cannot_store_or_read(tmp_path):
    with pytest.raises(ValueError, match=r"expected 'z' to have one of the dtypes .* got complex128"):
        safetensors_io.to_bytes({"z": np.zeros(2, dtype=complex)})
    data = safetensors_io.to_bytes({"w": np.arange(6.0)})
    path = tmp_path / "w.safetensors"
    path.write_bytes(data[:-5])
    with pytest.raises(ValueError, match=rf"{path}: not a valid safetensors file: entry 'w' has "
                                         rf"shape \(6,\) and offsets \[0, 48\] outside the 43 data bytes"):
        safetensors_io.load_file(path)
    path.write_bytes(data + b"extra")
    with pytest.raises(ValueError, match=rf"{path}: .*the arrays cover 48 of 53 data bytes"):
        safetensors_io.load_file(path)
    path.write_bytes(data[:20])
    with pytest.raises(ValueError, match=rf"{path}: .*header length"):
        safetensors_io.load_file(path)
    path.write_bytes(data[:3])
    with pytest.raises(ValueError, match="expected at least 8 bytes, got 3"):
        safetensors_io.load_file(path)
    with pytest.raises(FileNotFoundError, match="no safetensors file"):
        safetensors_io.load_file(tmp_path / "nope.safetensors")


# ---------------------------------------------------------------- damaged checkpoints

FILES = ["model.safetensors", "config.json", "optimizer.json", "optimizer.safetensors",
         "trainer_state.json", "trainer_state.safetensors", "tokenizer.json"]


@pytest.mark.parametrize("name", FILES)
def test_a_flipped_byte_names_the_file(tmp_path, name):
    full_checkpoint(tmp_path / "ckpt")
    path = tmp_path / "ckpt" / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{name}: sha256 .* the file is corrupted"):
        load_checkpoint(tmp_path / "ckpt")


@pytest.mark.parametrize("name", FILES)
def test_a_truncated_file_names_the_file(tmp_path, name):
    full_checkpoint(tmp_path / "ckpt")
    path = tmp_path / "ckpt" / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])
    with pytest.raises(ValueError, match=rf"{name}: expected {len(data)} bytes, got {len(data) - 7}"):
        load_checkpoint(tmp_path / "ckpt")


def test_missing_folder_or_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint folder at"):
        load_checkpoint(tmp_path / "nowhere")
    full_checkpoint(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "optimizer.safetensors").unlink()
    with pytest.raises(ValueError, match=r"optimizer.safetensors: missing, although manifest.json lists it"):
        load_checkpoint(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "manifest.json").unlink()
    with pytest.raises(ValueError, match="not a complete minillm checkpoint: manifest.json is missing"):
        load_checkpoint(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "manifest.json").write_text('{"format": "minillm-checkpoint", "version": 99, "files": {}}')
    with pytest.raises(ValueError, match="expected format 'minillm-checkpoint' version <= 1, got .* version 99"):
        load_checkpoint(tmp_path / "ckpt")


# ---------------------------------------------------------------- atomicity

def test_a_save_that_fails_midway_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    full_checkpoint(tmp_path / "ckpt", seed=0, step=1)
    real_write, calls = ckpt._write_file, []

    def write_then_fail(path, data):
        calls.append(path.name)
        if len(calls) > 1:
            raise OSError("disk full (simulated)")
        real_write(path, data)

    monkeypatch.setattr(ckpt, "_write_file", write_then_fail)
    with pytest.raises(OSError, match="simulated"):
        full_checkpoint(tmp_path / "ckpt", seed=1, step=2)
    assert len(calls) == 2  # the failure really happened after the first file
    monkeypatch.undo()
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.step == 1
    assert_same(some_arrays(0), loaded.weights)
    assert os.listdir(tmp_path) == ["ckpt"]  # no temporary folder left behind


def _crash_mid_swap(tmp_path, new_is_complete):
    """The state a crash leaves between 'old folder renamed aside' and 'new folder
    renamed into place' (what save_checkpoint does in between, without its clean-up)."""
    full_checkpoint(tmp_path / "ckpt", seed=0, step=1)
    full_checkpoint(tmp_path / "new", seed=1, step=2)
    if not new_is_complete:
        (tmp_path / "new" / "manifest.json").unlink()  # the manifest is written last
    os.rename(tmp_path / "ckpt", tmp_path / ".ckpt.old-abc")
    os.rename(tmp_path / "new", tmp_path / ".ckpt.tmp-abc")


@pytest.mark.parametrize("new_is_complete", [True, False])
def test_a_crash_mid_swap_leaves_a_loadable_checkpoint(tmp_path, new_is_complete):
    _crash_mid_swap(tmp_path, new_is_complete)
    assert load_checkpoint(tmp_path / "ckpt").step == (2 if new_is_complete else 1)
    assert len(hidden_leftovers(tmp_path)) == 2  # loading never writes
    save_checkpoint(tmp_path / "ckpt", weights={}, config={}, step=3)  # tidies up
    assert load_checkpoint(tmp_path / "ckpt").step == 3
    assert os.listdir(tmp_path) == ["ckpt"]


def test_a_folder_that_is_not_a_checkpoint_is_never_replaced(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="non-empty folder without manifest.json: refusing to replace it"):
        save_checkpoint(tmp_path / "out", weights={}, config={})
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    save_checkpoint(tmp_path / "empty", weights={}, config={}, step=4)
    assert load_checkpoint(tmp_path / "empty").step == 4


def test_a_crash_before_the_swap_keeps_the_old_checkpoint(tmp_path):
    full_checkpoint(tmp_path / "ckpt", seed=0, step=1)
    (tmp_path / ".ckpt.tmp-abc").mkdir()  # a save killed while writing its files
    (tmp_path / ".ckpt.tmp-abc" / "model.safetensors").write_bytes(b"half")
    assert load_checkpoint(tmp_path / "ckpt").step == 1
    full_checkpoint(tmp_path / "ckpt", seed=0, step=5)
    assert os.listdir(tmp_path) == ["ckpt"]


# ---------------------------------------------------------------- resuming across backends

def test_an_optimizer_saved_from_torch_resumes_in_the_reference(tmp_path):
    torch = pytest.importorskip("torch")
    from minillm import reference, torch_backend
    rng = np.random.default_rng(8)
    shapes = {"W": (3, 4), "b": (4,)}
    init = {n: rng.standard_normal(s) for n, s in shapes.items()}
    grads = [{n: rng.standard_normal(s) for n, s in shapes.items()} for _ in range(60)]

    def torch_steps(params, opt, gs):
        for g in gs:
            for n, p in params.items():
                p.grad = torch.tensor(g[n])
            opt.step()

    straight = {n: torch.nn.Parameter(torch.tensor(a)) for n, a in init.items()}
    torch_steps(straight, torch_backend.AdamW(straight.values(), lr=1e-2), grads)

    params = {n: torch.nn.Parameter(torch.tensor(a)) for n, a in init.items()}
    opt = torch_backend.AdamW(params.values(), lr=1e-2)
    torch_steps(params, opt, grads[:30])
    save_checkpoint(tmp_path / "c", weights={n: p.detach().numpy() for n, p in params.items()},
                    config={}, optimizer=opt.state_dict(), step=30)

    loaded = load_checkpoint(tmp_path / "c")
    check_state_dict(shapes, loaded.weights, where="resume")
    ref_params = {n: reference.Parameter(loaded.weights[n]) for n in shapes}
    ref_opt = reference.AdamW(ref_params.values())
    ref_opt.load_state_dict(loaded.optimizer)
    for g in grads[30:]:
        for n, p in ref_params.items():
            p.grad = g[n]
        ref_opt.step()
    for n in shapes:
        # same float64 operations in the same order in both backends: 1e-12 is generous
        np.testing.assert_allclose(ref_params[n].data, straight[n].detach().numpy(),
                                   rtol=0, atol=1e-12, err_msg=n)


# ---------------------------------------------------------------- checks of the input

def test_check_state_dict_lists_every_problem():
    expected = {"a": (2, 3), "b": (4,), "c": ()}
    check_state_dict(expected, {"a": np.zeros((2, 3)), "b": np.zeros(4), "c": np.zeros(())}, "ok")
    with pytest.raises(ValueError) as info:
        check_state_dict(expected, {"a": np.zeros((3, 2)), "c": np.zeros(()), "d": np.zeros(1)}, "GPT.load")
    message = str(info.value)
    assert message.startswith("GPT.load: the state dict does not match the model")
    assert "missing 1: b (4,)" in message
    assert "unexpected 1: d (1,)" in message
    assert "wrong shape 1: a: expected (2, 3), got (3, 2)" in message


@pytest.mark.parametrize("kwargs,match", [
    ({"weights": {"w": [1.0, 2.0]}}, "expected weights as a dict of str -> numpy.ndarray"),
    ({"config": ModelConfig()}, r"expected config to be a dict \(use config.to_dict\(\)\)"),
    ({"step": -1}, "expected step to be an int >= 0, got -1"),
    ({"extra": {"loss": [1.0, float("nan")]}}, r"expected finite floats .* got nan at extra.loss.1"),
    ({"extra": {1: "a"}}, "expected str keys"),
    ({"config": {"w": np.ones(2)}}, "expected config to hold JSON values only"),
    ({"data_state": {"it": iter([])}}, "expected JSON values or NumPy arrays, got list_iterator"),
])
def test_save_rejects_bad_input_before_writing(tmp_path, kwargs, match):
    args = {"weights": {"w": np.ones(2)}, "config": {}, **kwargs}
    with pytest.raises(ValueError, match=match):
        save_checkpoint(tmp_path / "c", **args)
    assert not (tmp_path / "c").exists() and hidden_leftovers(tmp_path) == []


# ---------------------------------------------------------------- no pickle anywhere

PICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "joblib"}


def unsafe_loads(source: str) -> list[str]:
    """Pickle imports, ``torch.load`` without ``weights_only=True`` and
    ``np.load(..., allow_pickle=True)`` in a Python source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLING_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLING_MODULES:
            found.append(f"from {node.module} import")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
            owner = ast.unparse(node.func.value)
            keywords = {k.arg: k.value for k in node.keywords}
            if owner == "torch":
                flag = keywords.get("weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    found.append(f"line {node.lineno}: torch.load without weights_only=True")
            if owner in ("np", "numpy"):
                flag = keywords.get("allow_pickle")
                if isinstance(flag, ast.Constant) and flag.value is True or flag is not None and not isinstance(flag, ast.Constant):
                    found.append(f"line {node.lineno}: np.load with allow_pickle")
    return found


def test_the_unsafe_load_detector_detects():
    assert unsafe_loads("import pickle") and unsafe_loads("from dill import loads")
    assert unsafe_loads("import torch\ntorch.load('x.pt')")
    assert unsafe_loads("torch.load('x.pt', weights_only=False)")
    assert unsafe_loads("np.load('x.npy', allow_pickle=True)")
    assert not unsafe_loads("torch.load('x.pt', weights_only=True)\nnp.load('x.npy')\n'import pickle'")


def test_no_module_of_minillm_unpickles():
    root = Path(minillm.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) > 10
    problems = {str(f.relative_to(root)): unsafe_loads(f.read_text(encoding="utf-8")) for f in files}
    assert not {f: p for f, p in problems.items() if p}


def test_checkpoints_need_no_torch(tmp_path):
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any 'import torch' now fails
        "import numpy as np\n"
        "from minillm.store.checkpoint import save_checkpoint, load_checkpoint\n"
        f"save_checkpoint({str(tmp_path / 'c')!r}, weights={{'w': np.ones(3, np.float32)}}, config={{}})\n"
        f"assert load_checkpoint({str(tmp_path / 'c')!r}).weights['w'].dtype == np.float32\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
