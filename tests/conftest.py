"""Shared test set-up: hypothesis profiles.

- ``ci``: derandomized and small, so CI is fast and repeatable (chosen when CI=true);
- ``dev``: many more examples, for a thorough local run:
  ``MINILLM_HYPOTHESIS_PROFILE=dev scripts/test.sh``.
The default outside CI is ``ci`` too, so the README's command stays quick.
"""
import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=25, derandomize=True, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", max_examples=300, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("MINILLM_HYPOTHESIS_PROFILE", "ci"))
