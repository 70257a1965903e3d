"""Test-session set-up shared by every test (root conftest, loaded before torch is imported)."""
import os

# With busy cores, OpenMP threads that spin while waiting make small torch ops ~100x slower;
# passive waiting keeps the suite's timings stable on a 2-core CI machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
