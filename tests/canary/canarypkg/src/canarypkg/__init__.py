"""Prime numbers, computed the slow and obvious way: the canary's fixture library."""


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    for d in range(2, n):
        if n % d == 0:
            return False
    return True


def primes_up_to(limit: int) -> list[int]:
    """Every prime p with p <= limit, in increasing order."""
    return [n for n in range(2, limit + 1) if is_prime(n)]


def count_primes(limit: int) -> int:
    return len(primes_up_to(limit))
