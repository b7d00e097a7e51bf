import pytest

from primes import count_primes, is_prime, primes_up_to


@pytest.mark.parametrize("n, expected", [(0, False), (1, False), (2, True), (3, True), (4, False),
                                         (97, True), (100, False), (7919, True)])
def test_is_prime(n, expected):
    assert is_prime(n) is expected


def test_primes_up_to_includes_the_limit():
    assert primes_up_to(30) == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    assert primes_up_to(29)[-1] == 29


def test_small_limits():
    assert primes_up_to(1) == []
    assert primes_up_to(2) == [2]


def test_count_primes():
    assert count_primes(100) == 25
    assert count_primes(1000) == 168
