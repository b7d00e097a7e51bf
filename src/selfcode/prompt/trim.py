"""Shrinking what the propose prompt shows, after the model said the prompt is too long.

The agent keeps the shrinkable parts of its prompt as a `PromptSections` and, on a
`ContextLengthError`, renders the prompt again from

    trim_context(sections, error.factor)

and retries once. Pure: no I/O, no prompt text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

__all__ = ["PromptSections", "trim_context"]

A = TypeVar("A")


@dataclass(frozen=True)
class PromptSections(Generic[A]):
    """The parts of the propose prompt that can shrink; everything else is kept as it is.

    files: path -> source shown to the model, most important first (the order of
        `context.editable_sources`); the first file is never dropped.
    attempts: the run's earlier attempts (`context.Attempt`, or anything), oldest first.
    repo_map: the repository map, one entry a line, most important first.
    The *_omitted counts say how much earlier trims left out, so the template can say so
    (e.g. "{{ files_omitted }} more files not shown").
    partial: the paths of `files` shown as excerpts (the functions that matter) only.
    target: what the prompt says about the candidate's target (`focus.TargetView`), kept
        whole by trimming: it is the reason for the prompt.
    attempts_share: the share of `[agent] attempts_chars` the attempts may take
        (`attempts.fit_attempts`); each trim shrinks it with the rest.
    """

    files: Mapping[str, str]
    attempts: Sequence[A] = ()
    repo_map: str = ""
    files_omitted: int = 0
    attempts_omitted: int = 0
    repo_map_lines_omitted: int = 0
    omitted_paths: tuple[str, ...] = field(default=())
    partial: frozenset[str] = frozenset()
    target: Any = None
    attempts_share: float = 1.0

    def chars(self) -> int:
        """The characters the files, the map and the target take: what trimming reduces."""
        return sum(len(path) + len(source) for path, source in self.files.items()) \
            + len(self.repo_map) + (self.target.chars() if self.target is not None else 0)


def trim_context(sections: PromptSections[A], factor: float) -> PromptSections[A]:
    """`sections` cut to about `factor` (0 < factor < 1) of their size: fewer files, a
    shorter history and a shorter repository map.

    Files are kept in order of importance while they fit in `factor` of the files' characters
    (a file that does not fit is skipped, a later smaller one may still fit; the first file is
    always kept, whole: a cut file could not be edited). The newest `factor` of the attempts is
    kept (at least the latest one), in `factor` of the characters they were allowed, and
    the first `factor` of the repository map's lines.
    """
    if not 0 < factor < 1:
        raise ValueError(f"trim_context: factor must be between 0 and 1, not {factor}")
    items = list(sections.files.items())
    budget = factor * sum(len(path) + len(source) for path, source in items)
    kept: dict[str, str] = {}
    dropped: list[str] = []
    used = 0
    for index, (path, source) in enumerate(items):
        size = len(path) + len(source)
        if index == 0 or used + size <= budget:
            kept[path] = source
            used += size
        else:
            dropped.append(path)

    attempts = list(sections.attempts)
    keep_attempts = max(min(1, len(attempts)), math.floor(len(attempts) * factor))
    recent = attempts[len(attempts) - keep_attempts:]

    lines = sections.repo_map.splitlines()
    keep_lines = math.floor(len(lines) * factor)
    repo_map = "\n".join(lines[:keep_lines])

    return replace(
        sections,
        files=kept,
        attempts=recent,
        attempts_share=sections.attempts_share * factor,
        repo_map=repo_map,
        files_omitted=sections.files_omitted + len(dropped),
        attempts_omitted=sections.attempts_omitted + len(attempts) - len(recent),
        repo_map_lines_omitted=sections.repo_map_lines_omitted + len(lines) - keep_lines,
        omitted_paths=(*sections.omitted_paths, *dropped),
    )
