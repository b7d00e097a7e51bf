"""`selfcode doctor`: a preflight a new user can trust before paying for a model.

It checks the machine (git, Python, the Docker engine and base image: `machine.py`), the model
endpoint with a one-token request (`endpoint.py`), the repository as a run will see it: HEAD,
its benchmarks committed or not, its dependency declarations (`repository.py`), and then runs
HEAD in the sandbox the way `improve` starts (`dryrun.py`): install, the tests once, each
benchmark's metric, and an estimate of the time per candidate (`estimate.py`). `diagnose.py`
puts them in order; each check is one line, ok or one sentence with the next step.
"""

from selfcode.doctor.checks import Check
from selfcode.doctor.diagnose import Diagnosis, diagnose, run_checks
from selfcode.doctor.estimate import Estimate

__all__ = ["Check", "Diagnosis", "Estimate", "diagnose", "run_checks"]
