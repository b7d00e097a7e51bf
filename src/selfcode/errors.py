"""The exceptions selfcode raises on purpose; the CLI turns each into one sentence and an exit code.

Anything else that escapes is a bug and is reported as such.
"""


class SelfcodeError(Exception):
    """An expected failure whose message is a complete sentence telling the user what to do next."""

    exit_code = 2


class ConfigError(SelfcodeError):
    """Configuration is missing or wrong (unknown key, wrong type, no endpoint)."""


class LLMError(SelfcodeError):
    """The model endpoint failed in a way retries could not fix."""


class EditError(SelfcodeError):
    """A model reply or a patch could not be turned into a safe change; the message is fed back."""


class PolicyError(EditError):
    """An edit touches a path the policy forbids (absolute, `..`, `.git/`, symlink, binary...)."""


class SandboxError(SelfcodeError):
    """The sandbox could not be started or used (no engine, image build failed, engine died)."""


class SandboxBroken(SandboxError):
    """The sandbox stopped working during a command while the engine still answers: its
    container died or was killed (the watchdog, the OOM killer), or it cannot run a command.

    What ran in it caused this, so the judge rejects the candidate with this message and the
    caller replaces the sandbox; only a plain `SandboxError` (engine, image) stops a run.
    """


class InfrastructureFailure(SandboxError):
    """Where a candidate was judged failed under it (a cluster node died, then the one it was
    retried on): the candidate is recorded as an infrastructure failure, neither accepted nor
    rejected, and the run goes on."""


class BaselineError(SelfcodeError):
    """The baseline cannot be judged against: its own tests give no clean, trustworthy report
    in the sandbox (collection errors, nothing passing, a report that contradicts itself).

    Raised before calibration and before any model request: every candidate would otherwise
    be judged against a broken run.
    """


class JudgeReportError(SandboxError):
    """The harness's report was forged, inconsistent or lost: the candidate is rejected.

    Never an acceptance and never a traceback. On the baseline, which is trusted, it stays a
    sandbox error (something broke the judge itself).
    """

    PREFIX = "the judge's report was tampered with or lost"

    def __init__(self, detail: str) -> None:
        super().__init__(f"{self.PREFIX}: {detail}")


class GitError(SelfcodeError):
    """The target is not a usable git repository, or a git operation failed."""


class LockedError(SelfcodeError):
    """Another selfcode run holds the repository's lock."""
