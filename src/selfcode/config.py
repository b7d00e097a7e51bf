"""Configuration: one pydantic model per component, merged in a fixed order.

defaults < `[tool.selfcode]` in the target's pyproject.toml (or selfcode.toml)
         < `SELFCODE_*` environment variables < command-line flags.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from selfcode.errors import ConfigError
from selfcode.gate.config import GateConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LLMConfig(_Section):
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 120.0
    max_retries: int = 4
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    temperature: float = 0.2
    max_tokens: int = 4096
    # USD per million tokens: {"model": {"input": x, "output": y}}; extends the built-in table.
    prices: dict[str, dict[str, float]] = Field(default_factory=dict)
    replay: Path | None = None
    # How the model writes its edits. "auto" picks from `formats` (model-name glob -> format,
    # the longest matching glob wins, case ignored), else SEARCH/REPLACE blocks.
    edit_format: Literal["auto", "search-replace", "udiff", "whole"] = "auto"
    formats: dict[str, Literal["search-replace", "udiff", "whole"]] = Field(default_factory=dict)
    # Append every exchange (messages, reply, usage, model, latency) to this JSONL file, in the
    # format ReplayLLM replays.
    record: Path | None = None
    # Where each model is asked when it is not at `base_url`: {"model-b": "http://host:8000/v1"}.
    # HOST_ONLY like base_url: the key goes to these endpoints too.
    endpoints: dict[str, str] = Field(default_factory=dict)

    @field_validator("model", mode="before")
    @classmethod
    def _model_list(cls, value: object) -> object:
        # "a, b,c" (a flag, SELFCODE_MODEL) or ["a", "b", "c"] (TOML) -> "a,b,c"; one name
        # stays exactly as given.
        if isinstance(value, list | tuple):
            value = ",".join(str(name) for name in value)
        if not isinstance(value, str) or "," not in value:
            return value
        names = [name.strip() for name in value.split(",")]
        if not all(names):
            raise ValueError(f"'{value}' has an empty model name; separate names with commas")
        if len(set(names)) != len(names):
            raise ValueError(f"'{value}' names a model twice")
        return ",".join(names)

    @field_validator("endpoints", mode="before")
    @classmethod
    def _endpoint_pairs(cls, value: object) -> object:
        # SELFCODE_ENDPOINTS="a=http://h:1/v1 b=http://h:2/v1" and repeated --endpoint a=URL.
        if isinstance(value, str):
            value = value.replace(";", " ").split()
        if not isinstance(value, list | tuple):
            return value
        pairs: dict[str, str] = {}
        for item in value:
            name, sep, url = str(item).partition("=")
            if not sep or not name.strip() or not url.strip():
                raise ValueError(f"'{item}' is not MODEL=URL")
            pairs[name.strip()] = url.strip()
        return pairs

    @property
    def models(self) -> tuple[str, ...]:
        """The models `model` names, in its order (one for a single name)."""
        return tuple(self.model.split(","))

    def for_model(self, name: str) -> LLMConfig:
        """This configuration for one of its models, at that model's endpoint."""
        return self.model_copy(update={"model": name,
                                       "base_url": self.endpoints.get(name, self.base_url)})


class SandboxConfig(_Section):
    backend: Literal["docker", "local"] = "docker"
    timeout: float = 300.0
    base_image: str = "python:3.12-slim"
    image: str | None = None
    memory: str = "2g"
    cpus: float = 1.0
    pids_limit: int = 256
    tmpfs_size: str = "512m"
    # docker backend: size caps of the tmpfs at /tmp and at $HOME (/home/sandbox). Like /work
    # (tmpfs_size), their pages count against `memory`.
    tmp_size: str = "256m"
    home_size: str = "64m"


class AgentConfig(_Section):
    goal: str = "Make the code faster without changing its behaviour."
    iterations: int = 5
    budget_usd: float | None = None
    repair_turns: int = 2
    max_context_chars: int = 60_000
    # The earlier attempts' section of the prompt (prompt/attempts.py): the newest in full,
    # older ones one line each, the oldest counted; 0 shows none.
    attempts_chars: int = Field(default=4_000, ge=0)
    # Run-wide caps beside budget_usd: prompt + completion tokens, and wall-clock minutes.
    max_tokens_total: int | None = Field(default=None, gt=0)
    max_minutes: float | None = Field(default=None, gt=0)
    # The search (run/loop.py, search/): candidates in flight (None: what the machine can
    # measure honestly, `search.pool.default_jobs`), how each parent is drawn from the archive
    # of accepted candidates, and the seed of that draw (a run is reproducible from it).
    jobs: int | None = Field(default=None, ge=1, le=16)
    strategy: Literal["greedy", "archive"] | None = None
    seed: int = 0


class ExecutorConfig(_Section):
    """Where candidates are judged (executors/): this machine's sandboxes, or the nodes of a
    Ray cluster (`ray_address`: host:port of its head; None joins the one on this machine)."""

    kind: Literal["local", "ray"] = "local"
    ray_address: str | None = None


SELFCODE_IDENTITY = "selfcode <selfcode@localhost>"


class GitConfig(_Section):
    """How selfcode's commits are signed and attributed."""

    author: str = SELFCODE_IDENTITY
    committer: str | None = None
    # A `Co-authored-by` trailer for selfcode itself when the author is someone else.
    attribution: str | None = SELFCODE_IDENTITY
    co_authors: list[str] = Field(default_factory=list)
    # Run the target's git hooks on selfcode's commits: opt-in only.
    hooks: bool = False

    @field_validator("co_authors", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        # From the environment: "A <a@x>; B <b@y>".
        if isinstance(value, str):
            return [part.strip() for part in value.split(";") if part.strip()]
        return value

    @field_validator("attribution", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value


class Settings(_Section):
    llm: LLMConfig = Field(default_factory=LLMConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    git: GitConfig = Field(default_factory=GitConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)


# SELFCODE_<NAME> environment variables and where they land.
_ENV_KEYS: dict[str, tuple[str, str]] = {
    "SELFCODE_MODEL": ("llm", "model"),
    "SELFCODE_BASE_URL": ("llm", "base_url"),
    "SELFCODE_ENDPOINTS": ("llm", "endpoints"),
    "SELFCODE_API_KEY_ENV": ("llm", "api_key_env"),
    "SELFCODE_LLM_TIMEOUT": ("llm", "timeout"),
    "SELFCODE_REPLAY": ("llm", "replay"),
    "SELFCODE_SANDBOX": ("sandbox", "backend"),
    "SELFCODE_TIMEOUT": ("sandbox", "timeout"),
    "SELFCODE_BASE_IMAGE": ("sandbox", "base_image"),
    "SELFCODE_IMAGE": ("sandbox", "image"),
    "SELFCODE_PAIRS": ("gate", "screen_pairs"),
    "SELFCODE_GATE_JUDGE": ("gate", "judge"),
    "SELFCODE_GIT_AUTHOR": ("git", "author"),
    "SELFCODE_GIT_COMMITTER": ("git", "committer"),
    "SELFCODE_GIT_ATTRIBUTION": ("git", "attribution"),
    "SELFCODE_GIT_CO_AUTHORS": ("git", "co_authors"),
    "SELFCODE_GIT_HOOKS": ("git", "hooks"),
    "SELFCODE_ITERATIONS": ("agent", "iterations"),
    "SELFCODE_BUDGET_USD": ("agent", "budget_usd"),
    "SELFCODE_EDIT_FORMAT": ("llm", "edit_format"),
    "SELFCODE_RECORD": ("llm", "record"),
    "SELFCODE_MAX_TOKENS_TOTAL": ("agent", "max_tokens_total"),
    "SELFCODE_MAX_MINUTES": ("agent", "max_minutes"),
    "SELFCODE_JOBS": ("agent", "jobs"),
    "SELFCODE_STRATEGY": ("agent", "strategy"),
    "SELFCODE_SEED": ("agent", "seed"),
    "SELFCODE_EXECUTOR": ("executor", "kind"),
    "SELFCODE_RAY_ADDRESS": ("executor", "ray_address"),
}

# Top-level keys of [tool.selfcode] that are shorthands for a section's field.
_SHORTHANDS: dict[str, tuple[str, str]] = {
    "benchmarks": ("gate", "benchmarks"),
    "protected": ("gate", "protected"),
    "protect_also": ("gate", "protect_also"),
    "judge_paths": ("gate", "judge_paths"),
    "canary": ("gate", "canary"),
    "goal": ("agent", "goal"),
    "model": ("llm", "model"),
}


# What the repository being improved may not choose: where the API key is sent, which file on
# this machine is written, whether and in what its code is isolated. A branch (or a fork a CI
# job runs on) could otherwise send the key to its own endpoint or run its tests on the host.
# These come from the SELFCODE_* environment or the command line only.
HOST_ONLY: dict[tuple[str, str], str] = {
    ("llm", "base_url"): "--base-url or SELFCODE_BASE_URL",
    ("llm", "endpoints"): "--endpoint MODEL=URL or SELFCODE_ENDPOINTS",
    ("llm", "api_key_env"): "SELFCODE_API_KEY_ENV",
    ("llm", "record"): "--record",
    ("llm", "replay"): "--replay or SELFCODE_REPLAY",
    ("llm", "prices"): "the command line or the environment (the budget caps rely on them)",
    ("sandbox", "backend"): "--sandbox or SELFCODE_SANDBOX",
    ("sandbox", "base_image"): "SELFCODE_BASE_IMAGE",
    ("sandbox", "image"): "SELFCODE_IMAGE",
    # Where the repository's code (and each candidate's) is sent to be run and judged.
    ("executor", "kind"): "--executor or SELFCODE_EXECUTOR",
    ("executor", "ray_address"): "--ray-address or SELFCODE_RAY_ADDRESS",
    # Opening the judge's own files to candidates is the user's decision, never a branch's.
    ("gate", "allow_judge_edits"): "--allow-judge-edits",
}


def _refuse_host_only(layer: dict[str, Any], source: str) -> None:
    for (section, key), instead in HOST_ONLY.items():
        if key in (layer.get(section) or {}):
            raise ConfigError(
                f"'{section}.{key}' in {source} is refused: the repository may not choose where "
                f"your API key goes or what runs on your machine; set it with {instead} instead.")


def _file_config(repo: Path) -> tuple[dict[str, Any], str | None]:
    selfcode_toml = repo / "selfcode.toml"
    pyproject = repo / "pyproject.toml"
    try:
        if selfcode_toml.is_file():
            return tomllib.loads(selfcode_toml.read_text("utf-8")), str(selfcode_toml)
        if pyproject.is_file():
            data = tomllib.loads(pyproject.read_text("utf-8"))
            return data.get("tool", {}).get("selfcode", {}), str(pyproject)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read the configuration in {repo}: {exc}.") from exc
    return {}, None


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`base` with `override` on top; nested tables merge key by key, other values replace."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _expand_shorthands(raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _SHORTHANDS:
            section, field = _SHORTHANDS[key]
            out = deep_merge(out, {section: {field: value}})
        else:
            out = deep_merge(out, {key: value})
    return out


def _env_config(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (section, field) in _ENV_KEYS.items():
        if environ.get(name) or (name == "SELFCODE_GIT_ATTRIBUTION" and name in environ):
            out = deep_merge(out, {section: {field: environ[name]}})
    return out


# Keys that were renamed: the old name gets a sentence pointing at the new one.
_RENAMED: dict[str, str] = {
    "gate.goal": ("'gate.goal' is now 'gate.judge' ([tool.selfcode.gate] judge = \"speed\", "
                  "\"fix\", \"metric\" or \"auto\", or --judge), and `goal` means only what "
                  "the model is asked to do ([tool.selfcode.agent] goal)"),
}


def upgrade_stored(data: dict[str, Any]) -> dict[str, Any]:
    """Settings a run stored before a key was renamed, with the key under its new name.

    Only for settings selfcode wrote itself (a run being resumed): in a user's file the old
    name is an error that says what to write instead.
    """
    gate = data.get("gate")
    if not isinstance(gate, dict) or "goal" not in gate:
        return data
    moved = {k: v for k, v in gate.items() if k != "goal"}
    moved.setdefault("judge", gate["goal"])
    return {**data, "gate": moved}


def _describe(exc: ValidationError, source: str) -> str:
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden" and key in _RENAMED:
            return f"Configuration key {_RENAMED[key]}; rename it in {source}."
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"Unknown configuration key '{key}' in {source}; check its spelling."
    return f"Configuration key '{key}' in {source} is invalid: {first['msg']}."


def load_settings(
    repo: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Merge every layer and validate each one, so an error names the layer that caused it."""
    environ = dict(os.environ) if environ is None else environ
    layers: list[tuple[str, dict[str, Any]]] = []
    if repo is not None:
        raw, source = _file_config(repo)
        if source:
            layer = _expand_shorthands(raw)
            _refuse_host_only(layer, source)
            layers.append((source, layer))
    layers.append(("the SELFCODE_* environment", _env_config(environ)))
    layers.append(("the command line", overrides or {}))
    merged: dict[str, Any] = {}
    for source, layer in layers:
        try:
            Settings.model_validate(layer)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, source)) from exc
        merged = deep_merge(merged, layer)
    return Settings.model_validate(merged)


def state_dir(git_common_dir: Path, environ: dict[str, str] | None = None) -> Path:
    """Where selfcode keeps a repository's history, lock and caches: never in the working tree."""
    environ = dict(os.environ) if environ is None else environ
    home = environ.get("SELFCODE_HOME")
    if home:
        # One folder per repository, so locks and histories of different repositories never mix.
        resolved = git_common_dir.resolve()
        digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
        name = (resolved.parent.name if resolved.name == ".git" else resolved.name) or "repo"
        path = Path(home) / f"{name}-{digest}"
    else:
        path = git_common_dir / "selfcode"
    path.mkdir(parents=True, exist_ok=True)
    return path
