"""`python -m selfcode`: the same command line as the `selfcode` script, for where no script is
installed (the canary runs a self-candidate's own selfcode this way, from its tree)."""

from selfcode.cli import app

app(prog_name="selfcode")
