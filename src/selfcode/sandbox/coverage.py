"""The cascade's reports from the harness (sandbox/selfcode_cascade.py), parsed as untrusted input.

The coverage map is recorded on the baseline only, but by the baseline's own tests, run demoted
like every other: it is bounded and checked here (ranges inside the collected ids, relative
paths), and one that does not hold up is dropped (the cascade then runs the full suite only),
never believed in part.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from selfcode.sandbox.results import Report, TestsReport, TestsRun

MAX_MAP_FILES = 100_000
MAX_RANGES = 2_000_000
Path = Annotated[str, Field(min_length=1, max_length=1_000)]
Range = tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=1)]]


class CoverageMap(BaseModel):
    """Which of the baseline's tests executed each file of its tree (tests by node id)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tests: list[str] = Field(max_length=200_000)
    files: dict[Path, list[Range]] = Field(default_factory=dict, max_length=MAX_MAP_FILES)

    @model_validator(mode="after")
    def _ranges_within_the_tests(self) -> CoverageMap:
        total = 0
        for path, ranges in self.files.items():
            if path.startswith("/") or "\\" in path or ".." in path.split("/"):
                raise ValueError(f"the map names a path outside the tree: {path[:100]!r}")
            total += len(ranges)
            if any(not start < stop <= len(self.tests) for start, stop in ranges):
                raise ValueError(f"the map's ranges for {path[:100]!r} leave the collected tests")
        if total > MAX_RANGES:
            raise ValueError("the map has more ranges than any suite needs")
        return self

    def tests_for(self, paths: Iterable[str]) -> list[str] | None:
        """The tests that executed any of `paths`, in collection order; None when one of the
        paths was executed by no test (a new file, or one the suite never reaches)."""
        selected: set[int] = set()
        for path in paths:
            ranges = self.files.get(path)
            if not ranges:
                return None
            for start, stop in ranges:
                selected.update(range(start, stop))
        return [self.tests[i] for i in sorted(selected)]


class CoverageReport(TestsReport):
    """`harness.py tests --coverage`: a tests run with each file's tests as ranges."""

    coverage: dict[Path, list[Range]] | None = Field(default=None, max_length=MAX_MAP_FILES)


def coverage_map(report: CoverageReport, baseline: TestsRun) -> CoverageMap | None:
    """The map of a recording run, or None when it cannot be used: the run's evidence did not
    hold up, or it collected other tests than the baseline's own run."""
    if report.tampered or report.coverage is None or report.collected is None \
            or report.collected != baseline.collected:
        return None
    try:
        return CoverageMap(tests=list(report.collected), files=dict(report.coverage))
    except ValidationError:
        return None


class ImportsReport(Report):
    """`harness.py imports`: the changed modules tried, and the ones that do not import where
    the baseline's do (module -> the first line of its error)."""

    kind: Literal["imports"]
    modules: list[Annotated[str, Field(max_length=500)]] = Field(default_factory=list,
                                                                 max_length=1_000)
    broken: dict[Annotated[str, Field(max_length=500)],
                 Annotated[str, Field(max_length=1_000)]] = Field(default_factory=dict,
                                                                  max_length=1_000)
