import pytest

from iii_sync import Backoff


def test_delays_grow_and_cap_without_jitter():
    backoff = Backoff(initial=1.0, maximum=5.0, multiplier=2.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_stays_within_its_fraction():
    backoff = Backoff(initial=10.0, jitter=0.3)
    assert backoff.delay(0, rand=lambda: 0.0) == pytest.approx(7.0)
    assert backoff.delay(0, rand=lambda: 1.0) == pytest.approx(13.0)
    assert backoff.delay(0, rand=lambda: 0.5) == pytest.approx(10.0)


def test_huge_attempt_numbers_do_not_overflow():
    assert Backoff(jitter=0.0).delay(10_000) == 30.0


def test_max_retries():
    assert not Backoff().exhausted(10**6)
    limited = Backoff(max_retries=3)
    assert not limited.exhausted(2)
    assert limited.exhausted(3)


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": -1}, {"multiplier": 0.5}, {"jitter": 1.5}, {"max_retries": -1}],
)
def test_bad_values_raise(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_value_semantics():
    assert Backoff(initial=2) == Backoff(initial=2)
    assert Backoff(initial=2) != Backoff(initial=3)
    assert len({Backoff(), Backoff()}) == 1
    assert "initial=2.0" in repr(Backoff(initial=2))
