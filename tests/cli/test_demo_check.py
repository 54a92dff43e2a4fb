"""`minillm demo` checks its own result: a run whose models did not learn exits non-zero
with a message naming each figure and its bound, and never prints the success line.
(CI runs the whole demo on the newest torch, see .ci/run; these tests check the check.)"""
import math

import pytest

from minillm import cli, demo


def test_the_readme_figures_pass():
    demo.check_results(54.0, 0.98)
    demo.check_results(demo.MAX_PERPLEXITY, demo.MIN_ACCURACY)  # the bounds themselves pass


@pytest.mark.parametrize("perplexity, accuracy, named", [
    (410.5, 0.98, ["perplexity is 410.5", "at most 70"]),    # torch 2.14's broken attention
    (54.0, 0.5, ["accuracy is 0.500", "at least 0.90"]),    # a classifier at chance
    (1024.0, 0.49, ["perplexity is 1024.0", "accuracy is 0.490"]),
    (math.nan, math.nan, ["perplexity is nan", "accuracy is nan"]),  # NaN never passes
])
def test_far_from_the_readme_fails_naming_each_figure(perplexity, accuracy, named):
    with pytest.raises(demo.DemoFailed) as err:
        demo.check_results(perplexity, accuracy)
    for words in named:
        assert words in str(err.value)


def test_the_command_exits_1_without_a_success_line(monkeypatch, tmp_path, capsys):
    """The CLI turns a failed check into exit status 1 and a message on stderr; the
    `done in ...` success line is never printed (run_demo raises before it)."""
    def run_that_did_not_learn(out, **kwargs):
        demo.check_results(410.5, 0.98)
        print("done in 1s")  # never reached

    monkeypatch.setattr(demo, "run_demo", run_that_did_not_learn)
    assert cli.main(["demo", "--out", str(tmp_path / "demo")]) == 1
    captured = capsys.readouterr()
    assert "minillm demo FAILED" in captured.err and "410.5" in captured.err
    assert "done in" not in captured.out


def test_a_demo_never_replaces_a_demo_silently(tmp_path, capsys):
    """Issue 29, item 1: a folder that holds a demo (any of its three runs, or demo.json)
    is refused before anything is written, unless --overwrite; --quick has its own folder."""
    assert demo.default_out(quick=True) != demo.default_out(quick=False)
    out = tmp_path / "demo"
    (out / "classifier").mkdir(parents=True)
    (out / "classifier" / "metrics.jsonl").write_text("{}\n")
    assert cli.main(["demo", "--quick", "--out", str(out), "--backend", "numpy"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {out} already holds a demo (classifier/); replace it with --overwrite, " \
                  f"or write another folder with --out\n"
    assert sorted(p.name for p in out.rglob("*")) == ["classifier", "metrics.jsonl"]     # nothing written
    demo.check_out(out, overwrite=True)                     # --overwrite: the demo may replace it
    demo.check_out(tmp_path / "empty", overwrite=False)     # nothing there: fine
