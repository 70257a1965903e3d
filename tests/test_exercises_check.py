"""The machinery every checker shares (crl_helpers.exercises._check): fresh inputs on every call, a time
limit that stops an answer which never returns (and gives the alarm back), Ctrl-C left alone, and hints
that quote the learner's own line."""
from __future__ import annotations

import signal
import threading
import time

import pytest
import torch

from crl_helpers.exercises import check_nt_xent, check_pair_matrix, check_same_class_fraction
from crl_helpers.exercises._check import time_limit


def test_every_call_draws_fresh_inputs():
    seen = []

    def spy(z1, z2, temperature):
        seen.append((z1.clone(), temperature))
        return None

    check_nt_xent(spy)
    check_nt_xent(spy)
    (a, ta), (b, tb) = seen
    assert a.shape != b.shape or ta != tb or not torch.equal(a, b)


def test_an_answer_that_never_returns_gets_not_yet_in_bounded_time():
    start = time.monotonic()
    result = check_pair_matrix(lambda n: time.sleep(30), time_limit=0.5)
    assert time.monotonic() - start < 5
    assert not result and "has not returned after 0.5 s" in result.message and "loop" in result.message


def test_the_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("CRL_CHECK_TIMEOUT", "0.3")

    def spin(n):
        while True:
            try:
                pass
            except Exception:  # a blanket except in the learner's code does not swallow the limit
                pass

    result = check_pair_matrix(spin)
    assert not result and "0.3 s" in result.message


def test_the_previous_alarm_and_handler_are_given_back():
    def outer(signum, frame):
        raise AssertionError("not expected to fire")

    previous = signal.signal(signal.SIGALRM, outer)
    signal.setitimer(signal.ITIMER_REAL, 50.0)
    try:
        check_pair_matrix(lambda n: None, time_limit=5)
        assert signal.getsignal(signal.SIGALRM) is outer
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 40 < remaining <= 50
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_ctrl_c_still_stops_the_cell():
    def interrupted(n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        check_pair_matrix(interrupted)
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0  # the check's alarm is off again


def test_outside_the_main_thread_there_is_no_limit_and_a_warning():
    results = []

    def run():
        with pytest.warns(RuntimeWarning, match="no time limit for this check"):
            with time_limit(0.1):
                time.sleep(0.3)
        results.append("finished")

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert results == ["finished"]


def test_the_hint_quotes_the_learners_line():
    def mine(n):
        mask = torch.eye(2 * n)
        return mask @ torch.ones(3)  # the learner's slip: a shape error

    result = check_pair_matrix(mine)
    assert not result and "RuntimeError" in result.message
    assert "in your line" in result.message and "mask @ torch.ones(3)" in result.message


def test_an_error_while_reading_the_answer_is_not_blamed_on_a_library_line():
    result = check_same_class_fraction(lambda labels: torch.empty((), device="meta"))
    assert not result
    assert "while checking what your function returned" in result.message
    assert "site-packages" not in result.message and "_check.py" not in result.message


def test_the_learners_own_assert_is_quoted_as_theirs():
    def mine(n):
        assert n > 100, "my own check"
        return None

    result = check_pair_matrix(mine)
    assert not result and result.message.startswith("your code raised AssertionError: my own check")
    assert 'assert n > 100, "my own check"' in result.message


def test_an_answer_that_swallows_the_first_alarm_is_still_stopped():
    def stubborn(n):
        try:
            time.sleep(30)
        except BaseException:  # noqa: B036  (the misbehaving answer under test)
            pass
        time.sleep(30)

    start = time.monotonic()
    result = check_pair_matrix(stubborn, time_limit=0.3)
    assert time.monotonic() - start < 5 and not result and "has not returned" in result.message
