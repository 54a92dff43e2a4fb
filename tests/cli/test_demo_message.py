"""The demo's failure message and README.md tell the same story: the message describes
README's real run in words that hold for it ("in the 50s", "about 0.99") rather than
copying figures that each new run moves, and this test reads README's demo output to
check the words still hold (the figures there come from a real run of the demo)."""
import re
from pathlib import Path

import pytest

from minillm import demo

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_demo_figures() -> tuple[float, float]:
    text = README.read_text(encoding="utf-8")
    perplexity = re.search(r"^\[pretrain\] GPT .*perplexity ([0-9.]+)$", text, re.M)
    accuracy = re.search(r"^\[evaluate\] test accuracy ([0-9.]+)", text, re.M)
    assert perplexity and accuracy, "README.md's demo output lost its [pretrain] GPT or [evaluate] line"
    return float(perplexity.group(1)), float(accuracy.group(1))


def test_the_failure_message_describes_readmes_run():
    perplexity, accuracy = readme_demo_figures()
    with pytest.raises(demo.DemoFailed) as err:
        demo.check_results(1024.0, 0.5)
    message = str(err.value)
    assert "README.md shows a real run's: in the 50s" in message and 50 <= perplexity < 60
    # "about 0.99": README's accuracy rounds to 0.99 at the nearest 0.01 step, within one step
    assert "README.md shows a real run's: about 0.99" in message and abs(accuracy - 0.99) <= 0.01
    demo.check_results(perplexity, accuracy)          # README's run passes the demo's own check
