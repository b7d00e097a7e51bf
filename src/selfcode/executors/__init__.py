"""Where candidates are judged: the seam between the search loop and the judges.

The loop, the archive, the history and git stay on the driver; an executor takes "judge this
candidate against this baseline" and gives back the verdict, re-checked in a fresh sandbox when
accepted, and the candidate's full-suite run (an accepted candidate's node is judged against
it next).

* `base.py`: the `Executor` protocol and what it returns (`Judged`).
* `local.py`: the pool of warm sandboxes on this machine (search/pool.py), the default.
* `ray.py`: judges on the nodes of a Ray cluster, each in its own node's hardened Docker sandbox
  (optional: `pip install 'selfcode[ray]'`).
"""
