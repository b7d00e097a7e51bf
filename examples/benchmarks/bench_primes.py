"""Counts the primes below 5,000; what it prints is the evidence that the work was done."""

from primes import count_primes, primes_up_to

print(count_primes(5000), sum(primes_up_to(5000)))
