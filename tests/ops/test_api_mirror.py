"""The two backends export the same public names with the same signatures.

``minillm.reference`` and ``minillm.torch_backend`` are read through their ``__all__``
at collection time, so the test grows with the package: every new public name is
checked as soon as it is exported. The only differences allowed are listed here with
their reason.
"""
import inspect
from pathlib import Path

import pytest

import minillm.reference as ref

pytest.importorskip("torch")
import minillm.torch_backend as torch_backend  # noqa: E402  (after the skip on purpose)

# name -> why only the torch backend has it
TORCH_ONLY = {
    "fused_attention": "calls torch's fused scaled_dot_product_attention kernel, which "
                       "NumPy has no counterpart of; it returns (out, None)",
}
# file -> why only the reference has it (every other file has its twin, same name)
REFERENCE_ONLY_FILES = {
    "erf.py": "NumPy has no error function, so the reference computes it (Cody's rational "
              "approximations) for the exact GELU; torch has torch.erf. It is a numerical "
              "tool, not a formula of the lesson, and exports nothing through minillm.reference",
}
# The reference alone exports f_forward / f_backward for each op f (docs/architecture.md).
REFERENCE_ONLY_SUFFIXES = ("_forward", "_backward")
# name -> why its constructor may differ; the reference's parameters must then still
# come first in the torch constructor, with the same names and kinds, so that a call
# written for the reference works unchanged in the torch backend.
SIGNATURE_EXTENDED_IN_TORCH = {
    "Parameter": "the torch backend exports torch.nn.Parameter itself, whose constructor "
                 "is (data=None, requires_grad=True); the reference takes (data)",
}

REF_NAMES = list(ref.__all__)
TORCH_NAMES = list(torch_backend.__all__)


def _reference_only_base(name, names=None):
    """``softmax`` for ``softmax_forward`` / ``softmax_backward``; None for other names.

    Only a suffix after an exported op counts: ``feed_forward`` is an op of its own (there
    is no ``feed``), while ``feed_forward_forward`` is its forward."""
    names = REF_NAMES if names is None else names
    for suffix in REFERENCE_ONLY_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in names:
            return name[: -len(suffix)]
    return None


def _shared_names():
    reference_public = [n for n in REF_NAMES if _reference_only_base(n) is None]
    return [n for n in reference_public if n in TORCH_NAMES]


def _signature(obj):
    """Signature of a function, or of a class's constructor without ``self``
    (``inspect.signature`` of a class reads ``__init__``, or ``__new__`` where the class
    constructs itself there, as ``torch.nn.Parameter`` does)."""
    return inspect.signature(obj)


def _describe(sig):
    return [(p.name, p.kind.name, p.default) for p in sig.parameters.values()]


def test_the_mirror_has_something_to_compare():
    # guards against a vacuous pass: the attention names must be there at least
    for name in ("scaled_dot_product_attention", "causal_mask", "split_heads"):
        assert name in _shared_names(), f"{name} missing from one backend's __all__"


def test_no_duplicate_public_names():
    for backend, names in (("reference", REF_NAMES), ("torch_backend", TORCH_NAMES)):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        assert not duplicates, f"{backend} exports these names twice: {duplicates}"


def test_every_exported_name_exists():
    for backend, module, names in (("reference", ref, REF_NAMES),
                                   ("torch_backend", torch_backend, TORCH_NAMES)):
        missing = [n for n in names if not hasattr(module, n)]
        assert not missing, f"{backend}.__all__ names things it lacks: {missing}"


def test_same_public_names_up_to_the_listed_extras():
    reference_public = {n for n in REF_NAMES if _reference_only_base(n) is None}
    torch_public = set(TORCH_NAMES) - set(TORCH_ONLY)
    only_reference = sorted(reference_public - torch_public)
    only_torch = sorted(torch_public - reference_public)
    assert not only_reference, f"in minillm.reference only: {only_reference}"
    assert not only_torch, (
        f"in minillm.torch_backend only: {only_torch}; add the reason to TORCH_ONLY "
        f"if that is intended"
    )
    for name in TORCH_ONLY:
        assert name in TORCH_NAMES, f"TORCH_ONLY lists {name}, which torch_backend lacks"
    leaked = sorted(n for n in TORCH_NAMES if _reference_only_base(n, TORCH_NAMES) is not None)
    assert not leaked, f"torch_backend exports reference-only names: {leaked}"


def test_forward_and_backward_names_belong_to_a_public_op():
    torch_public = set(TORCH_NAMES)
    for name in REF_NAMES:
        base = _reference_only_base(name)
        if base is None:
            continue
        assert base in REF_NAMES and base in torch_public, (
            f"reference exports {name}, but {base} is not a public op of both backends"
        )
        for suffix in REFERENCE_ONLY_SUFFIXES:
            assert base + suffix in REF_NAMES, (
                f"reference exports {name} but not {base + suffix}: forward and backward "
                f"come in pairs"
            )


@pytest.mark.parametrize("name", _shared_names())
def test_same_signature(name):
    ref_obj, torch_obj = getattr(ref, name), getattr(torch_backend, name)
    assert inspect.isclass(ref_obj) == inspect.isclass(torch_obj), (
        f"{name} is a class in one backend and not in the other"
    )
    ref_sig, torch_sig = _describe(_signature(ref_obj)), _describe(_signature(torch_obj))
    if name in SIGNATURE_EXTENDED_IN_TORCH:
        ref_names_kinds = [(n, kind) for n, kind, _ in ref_sig]
        torch_names_kinds = [(n, kind) for n, kind, _ in torch_sig]
        assert torch_names_kinds[: len(ref_sig)] == ref_names_kinds, (
            f"{name}: the torch constructor {torch_sig} does not start with the "
            f"reference's parameters {ref_sig}"
        )
        return
    assert ref_sig == torch_sig, (
        f"{name} has different parameters:\n  reference:     {ref_sig}\n"
        f"  torch_backend: {torch_sig}"
    )


@pytest.mark.parametrize("name", _shared_names())
def test_same_file_in_both_backends(name):
    # the file mirror: reference/attention.py and torch_backend/attention.py
    ref_file = getattr(ref, name).__module__.rsplit(".", 1)[-1]
    torch_file = getattr(torch_backend, name).__module__.rsplit(".", 1)[-1]
    assert ref_file == torch_file, (
        f"{name} lives in reference/{ref_file}.py but torch_backend/{torch_file}.py"
    )


def test_same_files_in_both_backends_up_to_the_listed_extras():
    # the file mirror of docs/architecture.md, file by file (not only the files that hold
    # a public name): a file in one backend only must be listed with its reason
    ref_files = {p.name for p in Path(ref.__file__).parent.glob("*.py")}
    torch_files = {p.name for p in Path(torch_backend.__file__).parent.glob("*.py")}
    assert "attention.py" in ref_files & torch_files                 # not a vacuous pass
    assert sorted(ref_files - torch_files) == sorted(REFERENCE_ONLY_FILES), (
        f"reference files without a torch_backend twin: {sorted(ref_files - torch_files)}; "
        f"add the reason to REFERENCE_ONLY_FILES if that is intended")
    assert not torch_files - ref_files, (
        f"torch_backend files without a reference twin: {sorted(torch_files - ref_files)}")
    for name in REFERENCE_ONLY_FILES:
        module = __import__(f"minillm.reference.{name[:-3]}", fromlist=["__all__"])
        leaked = sorted(set(module.__all__) & set(REF_NAMES))
        assert not leaked, f"reference/{name} has no torch twin, yet minillm.reference exports {leaked}"


def test_signature_check_can_fail():
    # the comparison above must see names, kinds and defaults
    def f(x, axis=-1):
        pass

    def g(x, axis=0):
        pass

    def h(x, *, axis=-1):
        pass

    assert _describe(_signature(f)) != _describe(_signature(g))
    assert _describe(_signature(f)) != _describe(_signature(h))


def test_reference_only_names_are_told_apart_from_ops_named_forward():
    names = ["feed_forward", "feed_forward_forward", "feed_forward_backward"]
    assert _reference_only_base("feed_forward", names) is None
    assert _reference_only_base("feed_forward_forward", names) == "feed_forward"
    assert _reference_only_base("feed_forward_backward", names) == "feed_forward"
    assert _reference_only_base("orphan_forward", names) is None  # then fails the mirror


def test_activation_names_agree_across_config_cli_and_both_backends():
    # minillm.core.config.ACTIVATIONS is the one list of names; the CLI offers it and each
    # backend's activations.ACTIVATIONS maps exactly those names to its own functions
    from minillm import cli
    from minillm.core.config import ACTIVATIONS, GATED_ACTIVATIONS
    from minillm.apps.interop import HF_ACTIVATIONS, HF_EXPORT_ACTIVATIONS
    from minillm.reference import activations as ref_act
    from minillm.torch_backend import activations as torch_act

    assert ACTIVATIONS and len(set(ACTIVATIONS)) == len(ACTIVATIONS), ACTIVATIONS
    assert tuple(ref_act.ACTIVATIONS) == ACTIVATIONS
    assert tuple(torch_act.ACTIVATIONS) == ACTIVATIONS
    assert tuple(torch_act.FAST_ACTIVATIONS) == ACTIVATIONS
    for name in ACTIVATIONS:  # each name maps to the public op of that name
        assert ref_act.ACTIVATIONS[name] == (getattr(ref, f"{name}_forward"), getattr(ref, f"{name}_backward"))
        assert torch_act.ACTIVATIONS[name] is getattr(torch_backend, name)
    commands = next(a for a in cli.build_parser()._actions if a.dest == "command").choices
    offered = {name: a.choices for name, sub in commands.items() for a in sub._actions
               if "--activation" in a.option_strings}
    assert set(offered) == {"pretrain", "finetune"}, offered
    for command, choices in offered.items():
        assert tuple(choices) == ACTIVATIONS + tuple(GATED_ACTIVATIONS), \
            f"minillm {command} --activation offers {choices}"
    assert set(GATED_ACTIVATIONS.values()) <= set(ACTIVATIONS), GATED_ACTIVATIONS   # each gate is an activation
    # interop: every name exports to a Hugging Face name that reads back as itself
    assert set(HF_EXPORT_ACTIVATIONS) == set(ACTIVATIONS)
    assert set(HF_ACTIVATIONS.values()) <= set(ACTIVATIONS)
    assert all(HF_ACTIVATIONS[HF_EXPORT_ACTIVATIONS[name]] == name for name in ACTIVATIONS)
