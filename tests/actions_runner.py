"""A small stand-in for GitHub's runner, so tests can run our workflows' shell steps for real.

It reads workflow and action files as YAML, evaluates the `${{ }}` expressions they use
(contexts, string literals, `||`, `&&`, `==`, `!=`, `!`, and the status functions), runs each
`run:` step in order exactly as GitHub starts it (the script in a file, `bash --noprofile
--norc -eo pipefail` for `shell: bash`), gives each step its own `$GITHUB_OUTPUT`, expands a
local composite action (`uses: ./`) into its steps with its inputs and outputs, and applies
GitHub's rule for `if:` (a step runs after a failure only when its condition asks to).

The steps that are GitHub's own actions (`actions/checkout`, `setup-python`, `upload-artifact`)
are handed to Python callbacks the test provides; nothing else is stood in for.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# How GitHub starts a `run:` step (docs: "Workflow syntax", jobs.<job_id>.steps[*].shell).
SHELLS = {"bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail"]}
DEFAULT_SHELL = ["bash", "-e"]  # no `shell:` on a Linux runner with bash present
STATUS_FUNCTIONS = ("always", "success", "failure", "cancelled")


def load(path: Path) -> dict[str, Any]:
    """A workflow or action file; YAML 1.1 reads the key `on` as True, GitHub does not."""
    data = yaml.safe_load(path.read_text("utf-8"))
    if True in data:
        data["on"] = data.pop(True)
    return dict(data)


# -- expressions ------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(\|\||&&|==|!=|!|\(|\))|'((?:[^']|'')*)'|"
                    r"([A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_*][A-Za-z0-9_-]*)*)|(-?\d+(?:\.\d+)?))")


def _tokens(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"cannot read the expression {text!r} at {pos}")
        op, literal, name, number = m.groups()
        if op:
            found.append(("op", op))
        elif literal is not None:
            found.append(("str", literal.replace("''", "'")))
        elif name:
            found.append(("name", name))
        else:
            found.append(("num", number))
        pos = m.end()
    return found


def truthy(value: object) -> bool:
    return value not in (None, "", False, 0)


def text_of(value: object) -> str:
    """How GitHub writes a value into a string: null is empty, booleans are lower case."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Parser:
    """Recursive descent over the tokens; `contexts` answers dotted names."""

    def __init__(self, text: str, contexts: Mapping[str, Any], failed: bool) -> None:
        self.tokens = _tokens(text)
        self.contexts = contexts
        self.failed = failed
        self.i = 0

    def parse(self) -> object:
        value = self._or()
        if self.i != len(self.tokens):
            raise ValueError(f"unexpected {self.tokens[self.i]} in expression")
        return value

    def _peek(self, *ops: str) -> bool:
        return self.i < len(self.tokens) and self.tokens[self.i] in [("op", o) for o in ops]

    def _or(self) -> object:
        value = self._and()
        while self._peek("||"):
            self.i += 1
            right = self._and()
            value = value if truthy(value) else right
        return value

    def _and(self) -> object:
        value = self._compare()
        while self._peek("&&"):
            self.i += 1
            right = self._compare()
            value = right if truthy(value) else value
        return value

    def _compare(self) -> object:
        left = self._unary()
        if self._peek("==", "!="):
            op = self.tokens[self.i][1]
            self.i += 1
            right = self._unary()
            # GitHub compares strings ignoring case; null equals the empty string only as ''.
            same = text_of(left).lower() == text_of(right).lower()
            return same if op == "==" else not same
        return left

    def _unary(self) -> object:
        if self._peek("!"):
            self.i += 1
            return not truthy(self._unary())
        return self._primary()

    def _primary(self) -> object:
        kind, value = self.tokens[self.i]
        self.i += 1
        if (kind, value) == ("op", "("):
            inner = self._or()
            if not self._peek(")"):
                raise ValueError("unbalanced parentheses in expression")
            self.i += 1
            return inner
        if kind == "str":
            return value
        if kind == "num":
            return float(value)
        if value in STATUS_FUNCTIONS and self._peek("("):
            self.i += 2  # "(" ")"
            return {"always": True, "success": not self.failed, "failure": self.failed,
                    "cancelled": False}[value]
        if value in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[value]
        return self._lookup(value)

    def _lookup(self, dotted: str) -> object:
        node: Any = self.contexts
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        return node


def evaluate(expr: str, contexts: Mapping[str, Any], failed: bool = False) -> object:
    return _Parser(expr, contexts, failed).parse()


def interpolate(value: object, contexts: Mapping[str, Any]) -> str:
    """A `with:`/`env:` value with each `${{ expr }}` replaced by its text."""
    return re.sub(r"\$\{\{(.*?)\}\}",
                  lambda m: text_of(evaluate(m.group(1), contexts)), text_of(value))


def should_run(condition: object, contexts: Mapping[str, Any], failed: bool) -> bool:
    """GitHub's `if:`: without a status function it means `success() && (condition)`."""
    if condition is None:
        return not failed
    expr = text_of(condition).strip()
    inner = re.fullmatch(r"\$\{\{(.*)\}\}", expr, re.S)
    expr = inner.group(1) if inner else expr
    if not re.search(rf"\b({'|'.join(STATUS_FUNCTIONS)})\(", expr) and failed:
        return False
    return truthy(evaluate(expr, contexts, failed))


# -- running a job ----------------------------------------------------------------------------

@dataclass
class StepRun:
    name: str
    outcome: str  # success, failure or skipped
    stdout: str = ""
    stderr: str = ""
    returncode: int | None = None


UsesHandler = Callable[[dict[str, str], "Job"], None]


@dataclass
class Job:
    """One job of a workflow on a stand-in runner.

    `env` is the process environment every step starts from (PATH, RUNNER_TEMP, ...); the
    workflow's and job's `env:` and each step's are laid over it, as GitHub does. `uses` maps
    an action's name (before the `@`) to the callback that stands in for it.
    """

    workspace: Path
    temp: Path
    env: dict[str, str]
    contexts: dict[str, Any]
    uses: dict[str, UsesHandler]
    skip: set[str] = field(default_factory=set)  # names of `run:` steps not to run
    job_env: dict[str, str] = field(default_factory=dict)
    default_shell: str | None = None  # the workflow's `defaults: run: shell:`
    runs: list[StepRun] = field(default_factory=list)
    failed: bool = False
    _counter: int = 0
    _ran: dict[str, tuple[dict[str, Any], dict[str, str], Path | None]] = field(
        default_factory=dict)

    def run(self, workflow: dict[str, Any], job_name: str,
            env_overrides: Mapping[str, str] | None = None) -> None:
        job = workflow["jobs"][job_name]
        self.default_shell = ((workflow.get("defaults") or {}).get("run") or {}).get("shell")
        self.job_env = {k: interpolate(v, self.contexts)
                        for k, v in {**(workflow.get("env") or {}),
                                     **(job.get("env") or {})}.items()}
        self.job_env.update(env_overrides or {})
        self.contexts["steps"] = {}
        self.contexts["env"] = dict(self.job_env)
        self._steps(job["steps"], self.contexts, {}, None)

    def _steps(self, steps: list[dict[str, Any]], contexts: dict[str, Any],
               outer_env: dict[str, str], action_dir: Path | None) -> None:
        for step in steps:
            name = str(step.get("name") or step.get("uses") or step.get("id"))
            if not should_run(step.get("if"), contexts, self.failed):
                self.runs.append(StepRun(name, "skipped"))
                continue
            env = {**outer_env, **{k: interpolate(v, contexts)
                                   for k, v in (step.get("env") or {}).items()}}
            outputs: dict[str, str] = {}
            if "run" in step:
                if name in self.skip:
                    self.runs.append(StepRun(name, "skipped"))
                    continue
                ok = self._run(name, step, env, outputs, action_dir)
            else:
                ok = self._uses(step, contexts, env, outputs)
            if step.get("id"):
                contexts["steps"][step["id"]] = {"outputs": outputs,
                                                 "outcome": "success" if ok else "failure"}
            self.failed = self.failed or not ok

    def _run(self, name: str, step: dict[str, Any], env: dict[str, str],
             outputs: dict[str, str], action_dir: Path | None) -> bool:
        self._ran[name] = (step, env, action_dir)
        self._counter += 1
        script = self.temp / f"step-{self._counter}.sh"
        script.write_text(str(step["run"]), "utf-8")
        output_file = self.temp / f"output-{self._counter}"
        output_file.write_text("")
        shell = step.get("shell") or (None if action_dir else self.default_shell)
        command = SHELLS[shell] if shell else DEFAULT_SHELL
        process_env = {**self.env, **self.job_env, **env, "GITHUB_OUTPUT": str(output_file),
                       "GITHUB_WORKSPACE": str(self.workspace)}
        if action_dir is not None:
            process_env["GITHUB_ACTION_PATH"] = str(action_dir)
        done = subprocess.run([*command, str(script)], cwd=self.workspace, env=process_env,
                              capture_output=True, text=True, timeout=900)
        outputs.update(read_outputs(output_file))
        self.runs.append(StepRun(name, "success" if done.returncode == 0 else "failure",
                                 done.stdout, done.stderr, done.returncode))
        return done.returncode == 0

    def _uses(self, step: dict[str, Any], contexts: dict[str, Any], env: dict[str, str],
              outputs: dict[str, str]) -> bool:
        uses = str(step["uses"])
        name = str(step.get("name") or uses)
        given = {k: interpolate(v, contexts) for k, v in (step.get("with") or {}).items()}
        if uses.startswith("./"):
            return self._composite(self.workspace / uses, given, env, outputs)
        handler = self.uses[uses.split("@", 1)[0]]
        try:
            handler(given, self)
        except Exception as exc:  # the stand-in refused what the step asked for
            self.runs.append(StepRun(name, "failure", stderr=f"{type(exc).__name__}: {exc}"))
            return False
        self.runs.append(StepRun(name, "success"))
        return True

    def _composite(self, action_dir: Path, given: dict[str, str], env: dict[str, str],
                   outputs: dict[str, str]) -> bool:
        action = load(action_dir / "action.yml")
        assert action["runs"]["using"] == "composite"
        unknown = set(given) - set(action.get("inputs") or {})
        assert not unknown, f"inputs the action does not declare: {sorted(unknown)}"
        inputs = {name: given.get(name, interpolate(spec.get("default", ""), self.contexts))
                  for name, spec in (action.get("inputs") or {}).items()}
        inner: dict[str, Any] = {**self.contexts, "inputs": inputs, "steps": {}}
        failed_before = self.failed
        self.failed = False
        self._steps(action["runs"]["steps"], inner, env, action_dir)
        ok = not self.failed
        self.failed = failed_before
        for name, spec in (action.get("outputs") or {}).items():
            outputs[name] = interpolate(spec.get("value", ""), inner)
        return ok

    def rerun(self, name: str) -> tuple[StepRun, dict[str, str]]:
        """Run a `run:` step that ran already once more, with the same inputs (a re-run)."""
        step, env, action_dir = self._ran[name]
        outputs: dict[str, str] = {}
        self._run(name, step, env, outputs, action_dir)
        return self.runs[-1], outputs

    def step(self, name: str) -> StepRun:
        """The (only, or else the latest) run of the step called `name`."""
        return [r for r in self.runs if r.name == name][-1]

    def transcript(self) -> str:
        return "\n".join(f"--- {r.name}: {r.outcome} ({r.returncode})\n{r.stdout}{r.stderr}"
                         for r in self.runs)


def read_outputs(path: Path) -> dict[str, str]:
    """`$GITHUB_OUTPUT`'s `name=value` lines and `name<<DELIM` blocks."""
    outputs: dict[str, str] = {}
    lines = iter(path.read_text("utf-8").splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            block = []
            for body in lines:
                if body == delimiter:
                    break
                block.append(body)
            outputs[name] = "\n".join(block)
        elif "=" in line:
            name, value = line.split("=", 1)
            outputs[name] = value
    return outputs


def runner_env(tmp: Path, path_first: list[Path]) -> dict[str, str]:
    """The process environment of a fresh runner: this machine's, minus anything of ours."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GIT_", "SELFCODE_", "OPENAI_", "GITHUB_", "GH_"))}
    env["PATH"] = os.pathsep.join([*map(str, path_first), env["PATH"]])
    env.update(CI="true", GITHUB_ACTIONS="true", RUNNER_TEMP=str(tmp),
               GIT_CONFIG_GLOBAL=str(tmp / "no-global-gitconfig"))
    return env


FAKE_GH = """#!{python}
# A stand-in for the GitHub CLI: records each call, answers like gh, reaches nothing.
import hashlib, json, os, sys
from pathlib import Path

args = sys.argv[1:]
call = {{"args": args, "cwd": os.getcwd(),
         "token_sha256": hashlib.sha256(os.environ.get("GH_TOKEN", "").encode()).hexdigest()}}
if "--body-file" in args:
    call["body"] = Path(args[args.index("--body-file") + 1]).read_text()
with open({log!r}, "a") as calls:
    calls.write(json.dumps(call) + "\\n")
existing = Path({existing!r})
if args[:2] == ["pr", "list"] and existing.exists():
    print(existing.read_text().strip())
elif args[:2] == ["pr", "create"]:
    print("https://github.example/o/r/pull/7")
"""


@dataclass(frozen=True)
class FakeGh:
    """`gh` on PATH that records its calls in `log` (JSON lines: arguments, the text of
    `--body-file`, a hash of GH_TOKEN) and answers `pr list` with `existing`'s URL if that
    file exists (a pull request already open), `pr create` with a new URL."""

    bin_dir: Path
    log: Path
    existing: Path

    @classmethod
    def install(cls, root: Path) -> FakeGh:
        gh = cls(root / "bin", root / "gh-calls.jsonl", root / "gh-existing-pr")
        gh.bin_dir.mkdir(parents=True, exist_ok=True)
        script = gh.bin_dir / "gh"
        script.write_text(FAKE_GH.format(python=sys.executable, log=str(gh.log),
                                         existing=str(gh.existing)))
        script.chmod(0o755)
        return gh

    def calls(self) -> list[dict[str, Any]]:
        return self.read_calls(self.log)

    @staticmethod
    def read_calls(log: Path) -> list[dict[str, Any]]:
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]
