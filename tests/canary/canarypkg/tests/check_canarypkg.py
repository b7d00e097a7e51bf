from canarypkg import count_primes, is_prime, primes_up_to


def test_small_primes() -> None:
    assert primes_up_to(30) == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]


def test_edges() -> None:
    assert not is_prime(0)
    assert not is_prime(1)
    assert is_prime(2)
    assert not is_prime(4)
    assert is_prime(97)


def test_count() -> None:
    assert count_primes(100) == 25
