"""The context of one candidate: its target first, then what the target needs, within budget.

A `ContextBuilder` is made once per baseline (the files do not change between candidates) and
reads each file at most once. `sections(target, targets)` puts, in this order: the target's
file (whole when small, else only the functions that matter, cut out by the AST), the
functions that call it, the other hotspots, then the modules the target's file imports; the
repository map lists the same modules first and stops at its cap. Without a target (no
profile, or the judge is not about speed) it falls back to the files the benchmarks import.
Sizes: the map takes at most a fifth of `max_chars`, the files the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from selfcode.gate.protected import protected_violations
from selfcode.prompt.context import (
    MAP_CHARS,
    Attempt,
    editable_sources,
    function_at,
    function_spans,
    imported_modules,
    module_file,
    package_of,
    repo_map,
)
from selfcode.prompt.targets import Target
from selfcode.prompt.trim import PromptSections

__all__ = ["ContextBuilder", "TargetView"]


@dataclass(frozen=True)
class TargetView:
    """What the prompt says about the target, beyond its source."""

    target: Target
    start: int
    end: int
    hot_lines: tuple[tuple[int, float, str], ...]
    """(line, share of the function's traced time, the line's code), hottest first."""
    hotspots: tuple[Target, ...]
    """Every target of this baseline, hottest first: where the benchmarks' time goes."""

    def chars(self) -> int:
        return sum(len(text) + 16 for _, _, text in self.hot_lines) + 120 * len(self.hotspots)


class ContextBuilder:
    def __init__(self, root: Path, files: list[str], protected: list[str], max_chars: int,
                 entry_points: list[str], include_peripheral: bool = False,
                 excerpts: bool = True) -> None:
        """`excerpts`: a large file may be shown as its hot functions only (not when the model
        answers with whole files: it would write back the excerpt as the file)."""
        self.root, self.files, self.protected = root, files, protected
        self.max_chars, self.entry_points = max_chars, entry_points
        self.include_peripheral, self.excerpts = include_peripheral, excerpts
        self.known = set(files)
        self._sources: dict[str, str | None] = {}
        self._spans: dict[str, dict[str, list[tuple[int, int]]]] = {}

    def source(self, path: str) -> str | None:
        if path not in self._sources:
            try:
                self._sources[path] = (self.root / path).read_text("utf-8") \
                    if path in self.known else None
            except (OSError, UnicodeDecodeError):
                self._sources[path] = None
        return self._sources[path]

    def spans(self, path: str) -> dict[str, list[tuple[int, int]]]:
        """The functions of `path` (parsed once per baseline)."""
        if path not in self._spans:
            source = self.source(path)
            self._spans[path] = function_spans(source) if source else {}
        return self._spans[path]

    @property
    def map_chars(self) -> int:
        return min(MAP_CHARS, self.max_chars // 5)

    def fallback(self, attempts: list[Attempt]) -> PromptSections[Attempt]:
        """No target: the files the benchmarks import, nearest first."""
        budget = self.max_chars - self.map_chars
        files = editable_sources(self.root, self.files, self.entry_points, self.protected,
                                 budget)
        return PromptSections(files=files, attempts=attempts, repo_map=repo_map(
            self.root, self.files, first=files, max_chars=self.map_chars,
            include_peripheral=self.include_peripheral, read=self.source))

    def sections(self, target: Target, targets: list[Target],
                 attempts: list[Attempt]) -> PromptSections[Attempt]:
        view = self.view(target, targets)
        budget = self.max_chars - self.map_chars - (view.chars() if view else 0)
        files, partial = self._files(target, targets, budget)
        first = [*files, *self._imports(target.file)]
        return PromptSections(
            files=files, attempts=attempts, partial=frozenset(partial), target=view,
            repo_map=repo_map(self.root, self.files, first=first, max_chars=self.map_chars,
                              include_peripheral=self.include_peripheral, read=self.source))

    def view(self, target: Target, targets: list[Target]) -> TargetView | None:
        source = self.source(target.file)
        span = function_at(self.spans(target.file), target.line, target.name)
        if source is None or span is None:
            return None
        lines = source.splitlines()
        hot = tuple((n, share, lines[n - 1].strip()[:200]) for n, share in target.lines[:5]
                    if 0 < n <= len(lines))
        return TargetView(target=target, start=span[0], end=span[1], hot_lines=hot,
                          hotspots=tuple(targets))

    def _excerpt(self, path: str, wanted: list[tuple[int, str]]) -> str | None:
        """The functions `wanted` ((line, name)) of `path`, in file order, whole."""
        source = self.source(path)
        if source is None:
            return None
        index = self.spans(path)
        spans = sorted({s for line, name in wanted if (s := function_at(index, line, name))})
        if not spans:
            return None
        lines = source.splitlines()
        parts = ["\n".join(lines[a - 1:b]) for a, b in spans]
        return "\n\n# ...\n\n".join(parts)

    def _wanted(self, target: Target, targets: list[Target]) -> dict[str, list[tuple[int, str]]]:
        """File -> functions worth showing, in order of relevance."""
        wanted: dict[str, list[tuple[int, str]]] = {target.file: [(target.line, target.name)]}
        for file, line, name, _ in target.callers:
            if file in self.known and not name.startswith("<"):
                wanted.setdefault(file, []).append((line, name))
        for other in targets:
            wanted.setdefault(other.file, []).append((other.line, other.name))
        return wanted

    def _files(self, target: Target, targets: list[Target],
               budget: int) -> tuple[dict[str, str], list[str]]:
        shown: dict[str, str] = {}
        partial: list[str] = []
        used = 0
        for path, functions in self._wanted(target, targets).items():
            source = self.source(path)
            if source is None:
                continue
            text, cut = source, False
            if len(source) > budget // 4 and self.excerpts:
                text, cut = self._excerpt(path, functions) or "", True
            if not shown and cut and len(text) > budget:  # a giant function: its head
                text = text[:max(budget - 40, 0)] + "\n# ... (cut to fit)"
            if text and used + len(path) + len(text) <= budget:
                shown[path], used = text, used + len(path) + len(text)
                if cut:
                    partial.append(path)
        for path in self._imports(target.file):
            source = self.source(path)
            if path in shown or source is None or len(source) > budget // 6 \
                    or (protected_violations([path], self.protected)):
                continue
            if used + len(source) <= budget:
                shown[path], used = source, used + len(path) + len(source)
        for path in self.entry_points:  # the benchmarks themselves (read-only): the workload
            source = self.source(path)
            if path not in shown and source is not None and used + len(source) <= budget:
                shown[path], used = source, used + len(path) + len(source)
        return shown, partial

    def _imports(self, path: str) -> list[str]:
        source = self.source(path)
        if source is None:
            return []
        found = (module_file(m, self.known)
                 for m in sorted(imported_modules(source, package_of(path))))
        return list(dict.fromkeys(f for f in found if f and f != path))
