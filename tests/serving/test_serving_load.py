"""benchmarks/bench_load.py, small, so that it cannot rot: a real `minillm serve` process
under rounds of valid, malformed, oversize and disconnecting clients answers no 5xx, loses
and mixes up no answer, and its memory stays flat after the first round (its times are not
judged: a shared machine is no place for speed thresholds)."""
import sys

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from test_serving import runs  # noqa: E402,F401  (runs: the session's tiny LM run)


@pytest.mark.slow
def test_load_mix_answers_every_client_rightly(runs):  # noqa: F811
    import minillm.bench
    minillm.bench.load_harness()                      # benchmarks/ on sys.path
    import bench_load

    proc, url = bench_load.start_server(runs["lm"], "numpy", 8)
    try:
        load, rss = bench_load.run_load(url, proc.pid, n_clients=15, rounds=3, max_new_tokens=8,
                                        max_body_bytes=65536, seconds=120, log=lambda _: None)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    tally = load.tally
    assert load.failures() == [], tally
    assert tally["checked"] == 3 * len(load.bodies) == 3 * 6        # 15 clients: 3 valid + 3 stream each round
    assert tally["statuses"][413] == 3 * 3 and tally["disconnected"] == 3 * 3
    assert sum(n for s, n in tally["statuses"].items() if s in (400, 415, 422)) == 3 * 3
    assert max(tally["statuses"]) < 500
    if sys.platform.startswith("linux"):
        assert len(rss) == 4 and all(rss) and bench_load.rss_flat(rss), rss
