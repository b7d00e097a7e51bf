"""Renders the prompts in `prompts/*.j2`; no prompt text lives in Python code."""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2

from selfcode.resources import prompts_dir


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(prompts_dir()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
    )


def render(name: str, **values: Any) -> str:
    return _environment().get_template(f"{name}.j2").render(**values).strip()
