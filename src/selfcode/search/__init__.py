"""The search's pure pieces: which parent to build on, which candidates repeat earlier work,
which model to ask. No I/O, no threads of their own; `run/loop.py` calls them.

- `parents.py`: the archive of judged nodes and the parent choice (greedy, or the Darwin Gödel
  Machine / ShinkaEvolve rule: score-weighted, with a penalty for children already tried).
- `dedupe.py`: "no work twice": a candidate's resulting tree, normalised by AST and hashed, and
  `Seen`, the thread-safe record of which candidate first produced each tree.
- `bandit.py`: the model for the next request: a cost-aware UCB1 over acceptances per dollar,
  with a floor of uniform exploration.
"""
