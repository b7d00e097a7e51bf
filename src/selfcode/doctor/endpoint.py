"""The model endpoint: one one-token chat request through the client `improve` uses.

Each failure is one sentence naming what answered (or did not) and the next step: nothing
listening, a refused key, a rate limit, a server error, or an answer that is no API's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from selfcode.config import Settings
from selfcode.doctor.checks import Check, Stopwatch
from selfcode.errors import SelfcodeError

if TYPE_CHECKING:
    from selfcode.llm import OpenAILLM

NAME = "model endpoint"
DOCTOR_TIMEOUT = 15.0  # seconds; a doctor that hangs for the run's long timeout helps nobody


def endpoint_checks(settings: Settings, environ: Mapping[str, str] | None = None) -> list[Check]:
    """One endpoint check per model of `--model a,b`, each at its own endpoint; one for one."""
    models = settings.llm.models
    if len(models) == 1:
        return [endpoint_check(settings, environ)]
    checks = []
    for name in models:
        one = settings.model_copy(update={"llm": settings.llm.for_model(name)})
        check = endpoint_check(one, environ)
        checks.append(check.model_copy(update={"name": f"{NAME} ({name})"}))
    return checks


def endpoint_check(settings: Settings, environ: Mapping[str, str] | None = None) -> Check:
    """Reachable or not, and if reachable, whether it answers a one-token request."""
    from selfcode.llm import EndpointUnreachable, OpenAILLM, RetriesExhausted

    watch = Stopwatch()
    config = settings.llm.model_copy(
        update={"timeout": min(settings.llm.timeout, DOCTOR_TIMEOUT)})
    try:
        llm = OpenAILLM(config, environ=environ)
    except SelfcodeError as exc:
        return Check(name=NAME, ok=False, detail=f"not configured: {exc}")
    target = llm.base_url
    try:
        llm.ping(retries=0)
    except EndpointUnreachable as exc:
        detail = (f"{target} is unreachable ({exc.problem}); start the model server there, or "
                  "pass the --base-url it listens on.")
    except RetriesExhausted as exc:
        detail = (f"{target} is rate-limiting requests ({exc.problem}); wait a minute and run "
                  "doctor again, or use a key with a higher limit."
                  if exc.problem.startswith("rate limited") else
                  f"{target} is reachable, but failed with a server error ({exc.problem}); try "
                  "again later, or check the server's log.")
    except SelfcodeError as exc:
        detail = (f"{target} is reachable{_served_models(llm)}, but the request failed: "
                  f"{_lower_first(str(exc))}")
    else:
        return Check(name=NAME, ok=True, seconds=watch.seconds,
                     detail=f"{target} is reachable and answers with model "
                            f"{settings.llm.model}{_served_models(llm)}")
    return Check(name=NAME, ok=False, detail=detail, seconds=watch.seconds)


def _lower_first(sentence: str) -> str:
    return sentence[:1].lower() + sentence[1:]


def _served_models(llm: OpenAILLM) -> str:
    """" (models: a, b, ...)" when the endpoint lists its models, else ""."""
    try:
        names = llm.list_models(retries=0)
    except SelfcodeError:
        return ""
    if not names:
        return ""
    shown = ", ".join(names[:8]) + (" …" if len(names) > 8 else "")
    missing = "" if llm.model in names else f"; {llm.model} is not among them"
    return f" (models: {shown}{missing})"
