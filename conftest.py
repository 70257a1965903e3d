"""Test-session set-up shared by every test (root conftest, loaded before torch is imported).

Hypothesis profiles:

- ``ci`` (the default): derandomized, so every run draws the same examples and a failure
  reproduces; no deadline (a busy CI core is no bug); a failing example prints its blob.
- ``explore``: examples freshly drawn on each run, ten times as many (1,000) for a test that sets
  no ``max_examples`` of its own (one given in a test's ``@settings`` wins over any profile), to
  hunt for new failures: ``HYPOTHESIS_PROFILE=explore pytest tests/test_losses.py``. Paste a
  failure it finds into the test as an ``@example(...)`` so that the ``ci`` profile keeps checking it.
"""
import os

# With busy cores, OpenMP threads that spin while waiting make small torch ops ~100x slower;
# passive waiting keeps the suite's timings stable on a 2-core CI machine. Set before any torch import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    from hypothesis import settings
except ImportError:  # hypothesis is a dev dependency; the tests that use it import it themselves
    settings = None

if settings is not None:
    settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
    settings.register_profile("explore", max_examples=1000, derandomize=False, deadline=None, print_blob=True)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
