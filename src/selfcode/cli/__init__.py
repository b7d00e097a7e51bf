"""The command line (`selfcode = "selfcode.cli:app"`): options in, one call, rendering out."""

from selfcode.cli.app import app

__all__ = ["app"]
