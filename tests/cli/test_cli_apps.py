"""`minillm translate` and `minillm answer`: train a run (--train --out), then use it;
bad combinations end with `error: ...` and exit status 2. Three steps only: the
learning itself is tested in test_applications.py and measured by bench_apps.py."""
import pytest

from minillm import cli
from minillm.apps.question_answering import answer
from minillm.apps.translation import translate
from minillm.store.runs import load_run
from minillm.store.runtime import Runtime


def test_translate_trains_then_translates(tmp_path, capsys):
    run = tmp_path / "tr"
    assert cli.main(["translate", "--train", "--out", str(run), "--steps", "3", "--backend", "numpy",
                     "--batch-size", "8"]) == 0
    captured = capsys.readouterr()
    assert "held-out dates" in captured.out
    # progress on stderr (not a terminal here): the first and the last of the 3 steps
    assert "[translation] step 1/3  loss " in captured.err and "[translation] step 3/3  loss " in captured.err
    texts = ["may first , two thousand", "the third of june , nineteen oh five"]
    assert cli.main(["translate", str(run), "--text", texts[0], "--text", texts[1], "--beam-size", "2"]) == 0
    printed = capsys.readouterr().out.splitlines()
    loaded = load_run(run, Runtime("numpy"), task="translation")
    model, rt, tok = loaded.model, loaded.runtime, loaded.tokenizer
    assert printed == translate(model, rt, tok, texts, beam_size=2)


def test_answer_trains_then_answers(tmp_path, capsys):
    run = tmp_path / "qa"
    assert cli.main(["answer", "--train", "--out", str(run), "--steps", "3", "--backend", "numpy",
                     "--batch-size", "8"]) == 0
    captured = capsys.readouterr()
    assert "held-out questions" in captured.out
    # progress on stderr (not a terminal here): the first and the last of the 3 steps
    assert "[question_answering] step 1/3  loss " in captured.err and "[question_answering] step 3/3  loss " in captured.err
    ctx, q = "alice lives in paris . bruno lives in oslo .", "where does bruno live ?"
    assert cli.main(["answer", str(run), "--context", ctx, "--question", q]) == 0
    loaded = load_run(run, Runtime("numpy"), task="question_answering")
    model, rt, tok = loaded.model, loaded.runtime, loaded.tokenizer
    assert capsys.readouterr().out.strip() == answer(model, rt, tok, [ctx], [q])[0]


def test_translate_train_takes_the_training_options_and_resumes(tmp_path, capsys):
    """translate --train has pretrain's training options: --device, --resume and the
    schedule's; --resume alone continues the run as recorded, a changed --steps is refused."""
    from minillm.train.run_config import RunConfig
    run = tmp_path / "tr"
    assert cli.main(["translate", "--train", "--out", str(run), "--steps", "2", "--backend", "numpy", "--device", "cpu",
                     "--batch-size", "4", "--seed", "1", "--warmup-steps", "0", "--weight-decay", "0.05",
                     "--grad-clip", "0.5", "--eval-every", "1", "--lr", "1e-3"]) == 0
    recorded = RunConfig.recorded(run)
    assert (recorded.backend, recorded.device, recorded.train.steps, recorded.train.batch_size) == ("numpy", "cpu", 2, 4)
    assert (recorded.train.seed, recorded.train.warmup_steps, recorded.train.weight_decay) == (1, 0, 0.05)
    assert (recorded.train.grad_clip, recorded.train.eval_every, recorded.train.lr) == (0.5, 1, 1e-3)
    capsys.readouterr()
    assert cli.main(["translate", "--train", "--out", str(run), "--backend", "numpy", "--resume"]) == 0
    assert "held-out dates" in capsys.readouterr().out
    assert cli.main(["translate", "--train", "--out", str(run), "--backend", "numpy", "--resume", "--steps", "5"]) == 2
    assert "it was started with --steps 2, got --steps 5" in capsys.readouterr().err
    assert cli.main(["translate", "--train", "--out", str(run), "--backend", "numpy"]) == 2
    assert "--resume" in capsys.readouterr().err and RunConfig.recorded(run) == recorded


@pytest.mark.parametrize("argv, message", [
    (["translate"], "neither"),
    (["translate", "RUN", "--train", "--out", "x"], "both"),
    (["translate", "--train"], "--out RUN"),
    (["answer", "RUN"], "--context TEXT and --question TEXT"),
    (["translate", "RUN"], "--text TEXT"),
])
def test_bad_combinations_exit_2(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
