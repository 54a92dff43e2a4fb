"""minillm.core.threads: the thread setting is applied and restored (no timings here: a shared
CI machine is no place for speed thresholds; benchmarks/bench_two_backends.py measures).

- ``thread_limit(n)`` sets torch's intra-op pool and NumPy's BLAS to n, or the BLAS to
  ``blas_threads``; both come back after the block, also when it raises;
- ``torch_turn()`` sets NumPy's BLAS to one thread and leaves it there, until an
  enclosing limit ends; ``Runtime("torch").threads()`` is that turn,
  ``Runtime("numpy").threads()`` changes nothing.
"""
import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")
torch = pytest.importorskip("torch")

from minillm.core import threads  # noqa: E402
from minillm.store.runtime import Runtime  # noqa: E402


def blas_threads():
    counts = {p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"}
    assert len(counts) == 1, counts                # one BLAS (NumPy's), or all set alike
    return counts.pop()


def test_thread_limit_sets_both_pools_and_restores_them():
    torch_before, blas_before = torch.get_num_threads(), blas_threads()
    with threads.thread_limit(3) as info:
        assert torch.get_num_threads() == 3 and blas_threads() == 3
        assert info["threads"] == 3 and info["torch_threads"] == 3
        assert any("(3 threads)" in b for b in info["blas"]), info["blas"]
    assert (torch.get_num_threads(), blas_threads()) == (torch_before, blas_before)
    with threads.thread_limit(2, blas_threads=1) as info:
        assert torch.get_num_threads() == 2 and blas_threads() == 1
    assert (torch.get_num_threads(), blas_threads()) == (torch_before, blas_before)


def test_thread_limit_restores_after_an_exception():
    torch_before, blas_before = torch.get_num_threads(), blas_threads()
    with pytest.raises(KeyError):
        with threads.thread_limit(3):
            raise KeyError("inside")
    assert (torch.get_num_threads(), blas_threads()) == (torch_before, blas_before)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_thread_limit_refuses_a_count_that_is_not_a_positive_int(bad):
    with pytest.raises(ValueError, match=f"n_threads must be an int >= 1, got {bad!r}"):
        with threads.thread_limit(bad):
            pass
    with pytest.raises(ValueError, match=f"blas_threads must be an int >= 1 or None, got {bad!r}"):
        with threads.thread_limit(1, blas_threads=bad):
            pass


def test_torch_turn_leaves_blas_at_one_thread_until_the_enclosing_limit_ends():
    """Left at one after the turn, so that no BLAS worker woken by the reference's next
    product competes with the next torch step (minillm/core/threads.py); the enclosing
    thread_limit block restores its own count."""
    with threads.thread_limit(2):
        with threads.torch_turn():
            assert blas_threads() == 1
            assert torch.get_num_threads() == 2            # torch's own count is untouched
        assert blas_threads() == 1
        with threads.thread_limit(2, blas_threads=2):
            assert blas_threads() == 2
            with pytest.raises(KeyError):
                with threads.torch_turn():
                    raise KeyError("inside")
            assert blas_threads() == 1
        assert blas_threads() == 1
    with threads.thread_limit(3):
        assert blas_threads() == 3


def test_runtime_threads_is_the_torch_turn_on_torch_only():
    with threads.thread_limit(2):
        with Runtime("numpy").threads():
            assert blas_threads() == 2
        with Runtime("torch").threads():
            assert blas_threads() == 1
        assert blas_threads() == 1
