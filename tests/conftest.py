"""Shared test set-up: hypothesis profiles.

- ``ci``: derandomized and small, so CI is fast and repeatable (chosen when CI=true);
- ``quick``: as small, but with fresh random examples on every run, so local runs keep
  exploring (the default outside CI, so the README's command stays quick);
- ``dev``: many more examples, for a thorough local run:
  ``MINILLM_HYPOTHESIS_PROFILE=dev scripts/test.sh``.
``MINILLM_HYPOTHESIS_PROFILE`` overrides the choice.
"""
import os

# One BLAS/OpenMP thread per process, set before NumPy or torch load their thread pools:
# on the 2-core CI machine, torch's and OpenBLAS's pools oversubscribe the cores and turn
# 0.01 ms matrix products into 20-75 ms ones (measured by the benchmark work, issue 6).
# Tests compare results, not speed, so one thread loses nothing.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from hypothesis import HealthCheck, settings  # noqa: E402

try:
    import torch
except ImportError:  # the NumPy-only tests still run
    pass
else:
    torch.set_num_threads(1)

settings.register_profile(
    "ci", max_examples=25, derandomize=True, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "quick", max_examples=25, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", max_examples=300, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
settings.load_profile(os.environ.get("MINILLM_HYPOTHESIS_PROFILE", "ci" if _in_ci else "quick"))
