"""The gate's configuration: what is protected, how benchmarks are measured, how sure it must be.

`Settings` (selfcode.config) carries it as its `gate` section; the defaults here are part of the
judge: a candidate that could edit them could lower the bar it is judged by.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Metric = Literal["cpu_time", "instructions"]

# Every way a Python project declares what it installs, at any depth.
DEPENDENCY_FILES = tuple(
    pattern
    for name in ("requirements*.txt", "requirements*.in", "requirements/**", "constraints*.txt",
                 "setup.py", "Pipfile", "Pipfile.lock", "poetry.lock", "uv.lock", "pdm.lock",
                 "pylock*.toml", "environment.yml", "environment.yaml", "conda-lock.yml",
                 "MANIFEST.in", "hatch.toml", "pixi.toml", "pixi.lock", ".python-version")
    for pattern in (name, f"**/{name}")
)


class GateConfig(BaseModel):
    """How candidates are judged: `[tool.selfcode.gate]`. Part of the judge, so it lives behind
    the judge's glob (`src/selfcode/gate/**`) and no candidate of selfcode may change it."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


    # How candidates are judged (`--judge`); the verdict JSON still calls the mode `goal`.
    judge: Literal["auto", "speed", "fix", "metric"] = "auto"
    # How benchmarks are measured: instruction counts (valgrind, deterministic) where a benchmark
    # runs under `instruction_native_limit` seconds natively, CPU time otherwise.
    metric: Literal["auto", "cpu_time", "instructions"] = "auto"
    metrics: dict[str, Metric] = Field(default_factory=dict)
    instruction_native_limit: float = 2.0
    screen_pairs: int = Field(default=10, ge=5)
    # The sequential confirmation (gate/sequential.py): at most `confirm_pairs` fresh pairs, in
    # `confirm_looks` equal groups; a clear win or loss stops at an earlier look. One look is
    # the fixed test.
    confirm_pairs: int = Field(default=20, ge=6)
    confirm_looks: int = Field(default=2, ge=1, le=10)
    calibration_pairs: int = Field(default=6, ge=3)
    alpha: float = Field(default=0.01, gt=0, lt=0.5)
    min_improvement: float = Field(default=0.03, ge=0, lt=1)
    max_time_noise: float = 0.10
    # Peak memory may grow this much (or min_improvement, if larger) before a significant
    # growth rejects a candidate.
    max_memory_growth: float = Field(default=0.10, ge=0)
    flaky_runs: int = Field(default=3, ge=1)
    sentinel_every: int = Field(default=20, ge=0)
    # Reject patches whose new code asks how it is being run (argv, the call stack, pytest in
    # sys.modules...): the classic way to take a shortcut only under the benchmark.
    refuse_context_probes: bool = True
    # Behaviour equivalence (speed judging): the changed functions are called on both trees, out
    # of process, with the arguments recorded in the baseline's tests and benchmarks and with
    # new inputs near them (neighbours, Hypothesis draws); any difference rejects.
    equivalence: bool = True
    # Reject a candidate when a changed function could not be compared at all.
    require_equivalence: bool = False
    equivalence_samples: int = Field(default=50, ge=1, le=1000)
    equivalence_calls: int = Field(default=100, ge=1, le=5000)
    equivalence_seconds: float = Field(default=10.0, gt=0)
    equivalence_call_seconds: float = Field(default=1.0, gt=0)
    equivalence_rel_tol: float = Field(default=1e-9, ge=0, lt=1)
    equivalence_seed: int = 0
    metric_command: str | None = None
    metric_direction: Literal["max", "min"] = "max"
    # The cascade (gate/cascade.py): the tests that exercise a candidate's changed files run
    # first, alone, with -x (from a coverage map recorded once per baseline), unless they are
    # more than this share of the suite. They can only reject earlier; the full suite decides.
    select_tests: bool = True
    select_max_share: float = Field(default=0.5, gt=0, le=1)
    # Extra arguments for the judged pytest run (e.g. ["tests/unit"]); the harness always runs
    # pytest itself, since the JUnit report and the collected ids come from it.
    pytest_args: list[str] = Field(default_factory=list)
    benchmarks: dict[str, str] = Field(default_factory=dict)
    protected: list[str] = Field(
        default_factory=lambda: [
            "tests/**",
            "test/**",
            "testing/**",
            "**/tests/**",
            "**/test_*.py",
            "**/*_test.py",
            "test_*.py",
            "*_test.py",
            "**/conftest.py",
            "conftest.py",
            # Every file pytest reads its configuration from, at any depth (pytest looks upward
            # from its arguments, and 9.x added pytest.toml and the dotted names).
            *(pattern for name in ("pytest.ini", ".pytest.ini", "pytest.toml", ".pytest.toml",
                                   "tox.ini", "setup.cfg", "pyproject.toml")
              for pattern in (name, f"**/{name}")),
            "**/sitecustomize.py",
            "sitecustomize.py",
            "**/usercustomize.py",
            "usercustomize.py",
            "**/*.pth",
            "*.pth",
            # Installed-distribution metadata on the import path: pytest loads the `pytest11`
            # entry points of every distribution it finds there, so a new .dist-info is a plugin.
            "*.dist-info/**",
            "**/*.dist-info/**",
            "*.egg-info/**",
            "**/*.egg-info/**",
            "*.egg-link",
            "**/*.egg-link",
            "benchmarks/**",
            ".github/**",
            ".gitlab-ci.yml",
            ".ci/**",
            ".git*",
            "**/.git*",
            # git-lfs reads its server from .lfsconfig when a checkout or an apply runs it.
            ".lfsconfig",
            "**/.lfsconfig",
            "selfcode.toml",
            # Dependency declarations: the sandbox image is built from the baseline's, and a
            # candidate that could add one could make the host fetch or build what it names.
            *DEPENDENCY_FILES,
        ]
    )

    # Added to `protected` rather than replacing it, so extending the defaults cannot drop them.
    protect_also: list[str] = Field(default_factory=list)
    # The judge's own files (selfcode's `src/selfcode/gate/**`): protected like `protect_also`,
    # unless `allow_judge_edits` (only from the command line, `--allow-judge-edits`) opens them;
    # then the canary corpus is the guard, so it must be configured.
    judge_paths: list[str] = Field(default_factory=list)
    allow_judge_edits: bool = False
    # A directory of the repository holding a canary corpus (gate/canary.py): every candidate
    # the gate accepts must have its own judge reproduce the corpus's verdicts (promotion).
    canary: str | None = None

    @model_validator(mode="after")
    def _merge_protect_also(self) -> GateConfig:
        # (Whether a canary backs `allow_judge_edits` is checked by the Judge, on the merged
        # configuration: each layer alone is validated here too.)
        guarded = [] if self.allow_judge_edits else self.judge_paths
        extra = [p for p in [*self.protect_also, *guarded] if p not in self.protected]
        if extra:
            # Assigning through __dict__ skips validate_assignment's re-entry into this hook.
            self.__dict__["protected"] = [*self.protected, *extra]
        return self

    @field_validator("protected")
    @classmethod
    def _never_empty(cls, value: list[str]) -> list[str]:
        # An empty list would let a candidate rewrite the tests that judge it.
        if not value:
            raise ValueError("must list at least one pattern; an empty list would let "
                             "candidates edit their own tests")
        return value
