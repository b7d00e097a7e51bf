"""Counts the primes up to 1,500; what it prints is the evidence that the work was done."""

from canarypkg import count_primes, primes_up_to

print(count_primes(1500), sum(primes_up_to(1500)))
