"""The prompt states exactly the rules the gate applies in this run.

`stated_problems` reads a rendered prompt against a `GateRules` and lists every claim that
is missing or wrong. It is run on every judge x metric combination, with non-default numbers
so that a hard-coded value would show, and on two negative controls: the templates from
before the rules were rendered from the gate (tests/fixtures/prompts_before/), and a prompt
checked against rules other than the ones it was rendered from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import pytest
from typer.testing import CliRunner

from selfcode.cli.app import app
from selfcode.gate.config import GateConfig
from selfcode.gate.measure import BenchSetting, Calibration
from selfcode.prompt.render import render
from selfcode.prompt.rules import GateRules
from selfcode.resources import prompts_dir
from selfcode.run.workflows import prepare_demo_repo

BEFORE = Path(__file__).parent / "fixtures" / "prompts_before"

# Numbers no default shares: a template that hard-codes one is caught.
CONFIG: dict[str, Any] = {"alpha": 0.02, "min_improvement": 0.04, "screen_pairs": 7,
                          "confirm_pairs": 13, "max_memory_growth": 0.15,
                          "protect_also": ["src/pkg/judge_me.py"]}
DELTAS = {"parse": 0.045, "sort": 0.083}


def calibration(*metrics: str) -> Calibration:
    return Calibration(valgrind=True, pairs=6, benchmarks={
        name: BenchSetting(metric=metric, delta=DELTAS[name], cv=0.01, p95_ratio=1.02,
                           native_s=0.5)
        for name, metric in zip(DELTAS, metrics, strict=False)})


def speed_rules(*metrics: str, **config: Any) -> GateRules:
    cal = calibration(*metrics) if metrics else None
    return GateRules.of(GateConfig(**CONFIG | config), "speed", DELTAS, cal)


CASES: dict[str, GateRules] = {
    "speed, instructions": speed_rules("instructions", "instructions"),
    "speed, cpu_time": speed_rules("cpu_time", "cpu_time"),
    "speed, mixed": speed_rules("instructions", "cpu_time"),
    "speed, before calibration": speed_rules(),
    "speed, probes allowed": speed_rules("cpu_time", "instructions",
                                         refuse_context_probes=False),
    "fix": GateRules.of(GateConfig(**CONFIG), "fix", [], None),
    "metric, max": GateRules.of(GateConfig(**CONFIG, metric_command="python tools/score.py"),
                                "metric", [], None),
    "metric, min": GateRules.of(GateConfig(**CONFIG, metric_command="python tools/cost.py",
                                           metric_direction="min"), "metric", [], None),
}


def pct(x: float) -> str:
    return f"{x * 100:.1f} %"


def _speed_problems(text: str, rules: GateRules) -> list[str]:
    out = []
    for b in rules.benchmarks:
        if b.metric == "instructions":
            line = f"- {b.name}: instruction counts"
        elif b.metric == "cpu_time":
            line = f"- {b.name}: CPU time, smallest claimable gain {pct(b.delta)}"
        else:
            line = f"- {b.name}: chosen when the run calibrates"
        if line not in text:
            out.append(f"benchmark {b.name} is not stated as {line!r}")
    counted = rules.judged_by("instructions") or rules.judged_by(None)
    timed = rules.judged_by("cpu_time") or rules.judged_by(None)
    if counted and not all(s in text for s in (
            "median candidate count over the median baseline count",
            f"at most {rules.instructions_overall}", f"above {rules.instructions_single}",
            f"ratio at most {rules.confirm_below}", f"p < {rules.screen_alpha}")):
        out.append("the instruction-count rule is not stated")
    if timed and not all(s in text for s in (
            "one-sided Wilcoxon signed-rank test", f"p < {rules.alpha} ",
            f"never less than {pct(rules.min_improvement)}", f"{rules.confirm_pairs} fresh")):
        out.append("the CPU-time rule is not stated")
    if not timed and ("Wilcoxon" in text or f"p < {rules.alpha} " in text):
        out.append("a CPU-time test is stated though no benchmark is judged by CPU time")
    if f"peak memory: {pct(rules.memory_growth)}" not in text:
        out.append("the resource-regression rule is not stated")
    if "prints exactly the same output" not in text:
        out.append("identical benchmark output is not required")
    return out


def stated_problems(prompt: str, rules: GateRules) -> list[str]:
    """Every way `prompt` misstates how the gate configured as `rules` judges."""
    text = " ".join(prompt.split())
    out = [] if f"Judge: {rules.judge}." in text else [f"the judge {rules.judge} is not named"]
    fix_rule = "at least one failing test passes and none newly fails"
    if rules.judge == "speed":
        out += _speed_problems(text, rules)
    elif rules.judge == "metric":
        better, worse = ("higher", "lower") if rules.metric_direction == "max" else ("lower",
                                                                                    "higher")
        if f"`{rules.metric_command}`" not in text or f"is {better} than" not in text:
            out.append("the metric command or its direction is not stated")
        if f"is {worse} than" in text:
            out.append("the metric's direction is stated backwards")
    if (fix_rule in text) != (rules.judge == "fix"):
        out.append("the fix rule is stated for another judge, or missing for fix")
    if rules.judge != "speed" and ("Wilcoxon" in text or "Benchmarks are not run" not in text):
        out.append("benchmarks are said to count though this judge runs none")
    if "every test that passed still passes" not in text:
        out.append("the tests' rule is not stated")
    out += [f"protected path {p} is not listed" for p in rules.protected if p not in text]
    if ("inspects how it is being run" in text) != rules.refuse_context_probes:
        out.append("the context-probe refusal is misstated")
    return out


def system_problems(prompt: str, rules: GateRules) -> list[str]:
    text = " ".join(prompt.split())
    speed_words = any(w in text for w in ("faster", "performance"))
    out = [] if speed_words == (rules.judge == "speed") else ["the system prompt's aim is "
                                                               "not the judge's"]
    if rules.judge == "metric" and f"`{rules.metric_command}`" not in text:
        out.append("the system prompt does not name the metric")
    return out


def user_prompt(rules: GateRules) -> str:
    return render("propose", goal="Do better.", rules=rules, repo_map="lib.py",
                  files={"lib.py": "x = 1\n"}, readonly=[], attempts=[], files_omitted=0)


@pytest.mark.parametrize("case", CASES)
def test_the_prompt_states_the_gates_rules(case):
    rules = CASES[case]
    assert stated_problems(user_prompt(rules), rules) == []
    system = render("system", rules=rules, edit_format="search-replace")
    assert system_problems(system, rules) == []


def test_the_numbers_come_from_the_gate():
    rules = CASES["speed, mixed"]
    assert (rules.alpha, rules.min_improvement, rules.memory_growth) == (0.02, 0.04, 0.15)
    assert [(b.name, b.metric, b.delta) for b in rules.benchmarks] == [
        ("parse", "instructions", 0.045), ("sort", "cpu_time", 0.083)]
    assert "src/pkg/judge_me.py" in rules.protected and "tests/**" in rules.protected
    # Instruction counts configured before calibration are certain; CPU time is not (noise
    # can turn it into counts), so it stays undecided.
    early = speed_rules(metrics={"parse": "instructions", "sort": "cpu_time"})
    assert [b.metric for b in early.benchmarks] == ["instructions", None]


def _before(name: str, **values: Any) -> str:
    env = jinja2.Environment(loader=jinja2.ChoiceLoader([
        jinja2.FileSystemLoader(BEFORE), jinja2.FileSystemLoader(prompts_dir())]),
        undefined=jinja2.StrictUndefined)
    return env.get_template(f"{name}.j2").render(**values)


@pytest.mark.parametrize("case", ["speed, instructions", "fix", "metric, max", "metric, min"])
def test_negative_control_the_old_templates_are_caught(case):
    rules = CASES[case]
    old = _before("propose", goal="Do better.", judge_goal=rules.judge,
                  min_improvement_pct=round(rules.min_improvement * 100, 1), alpha=rules.alpha,
                  benchmarks=[b.name for b in rules.benchmarks], repo_map="", files={},
                  readonly=[], attempts=[], files_omitted=0)
    assert stated_problems(old, rules) != []
    if rules.judge != "speed":
        assert system_problems(_before("system", edit_format="whole"), rules) != []


def test_negative_control_another_gates_rules_are_caught():
    shown = user_prompt(CASES["speed, mixed"])
    for other in (speed_rules("instructions", "cpu_time", alpha=0.03),
                  speed_rules("instructions", "cpu_time", min_improvement=0.05),
                  speed_rules("cpu_time", "instructions"), CASES["fix"],
                  speed_rules("instructions", "cpu_time", protect_also=["secret.py"])):
        assert stated_problems(shown, other) != [], other
    metric = user_prompt(CASES["metric, max"])
    assert "the metric's direction is stated backwards" in stated_problems(
        metric, CASES["metric, min"])


def test_a_real_run_states_its_calibrated_metric(tmp_path, openai_server):
    """Through the loop: the prompt names the metric the run's calibration chose."""
    repo, _ = prepare_demo_repo(tmp_path / "demo")
    openai_server.script("no edit", "still none", "none again")  # the reply and its repairs
    result = CliRunner().invoke(app, [
        "improve", str(repo), "--base-url", openai_server.base_url, "--model", "gpt-4o-mini",
        "--iterations", "1", "--sandbox", "local", "--json", "--goal", "Make primes fast."])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["candidates"] == 1
    system, user = (m["content"] for m in openai_server.requests[0]["messages"])
    text = " ".join(user.split())
    assert user.startswith("## Goal\nMake primes fast.") and "Judge: speed." in text
    judged = "instruction counts" if "judged by instructions" in result.stderr else "CPU time"
    assert f"- primes: {judged}" in text, result.stderr
    assert "faster" in system


# -- earlier attempts: each rationale cut where a reader can follow it ---------------------------

LONG = ("Replace the Python loop in squares() with the closed form n(n-1)(2n-1)/6, which "
        "needs no iteration at all. The loop was the hot spot in every benchmark, and the "
        "closed form is exact for integers, so the tests keep passing without any change to "
        "the public interface or its documented behaviour")


@pytest.mark.parametrize(("text", "limit", "clipped"), [
    ("Use sum().", 200, "Use sum()."),  # fits: kept whole
    ("  Use   sum()\tinstead. ", 200, "Use sum() instead."),  # spacing is normalised
    ("Use sum() instead of the loop. It is written in C and faster.", 40,
     "Use sum() instead of the loop. …"),  # a whole sentence fits
    ("Use the builtin sum instead of the explicit loop over values", 30,
     "Use the builtin sum instead…"),  # no sentence ends early enough: a word boundary
    ("Cache it. Then reuse the cached table across every call of the function", 40,
     "Cache it. Then reuse the cached table…"),  # the sentence is too short to stand alone
    ("Unroll, then inline, then hoist the invariant loads out of it", 24,
     "Unroll, then inline…"),  # no dangling comma before the ellipsis
    ("x" * 50, 20, "x" * 19 + "…"),  # one word longer than the budget: cut inside it
])
def test_clip_cuts_at_a_sentence_or_word_boundary(text: str, limit: int, clipped: str) -> None:
    from selfcode.prompt.context import clip

    assert clip(text, limit) == clipped
    assert len(clip(text, limit)) <= limit


def test_earlier_attempts_show_each_rationale_cut_at_a_boundary_within_the_budget():
    from selfcode.prompt.context import SUMMARY_CHARS
    from selfcode.run.loop import attempt  # how the loop records a finished candidate

    attempts = [attempt(1, LONG + "\nA second line.", "rejected", ["tests failed"]),
                attempt(2, "", "malformed", [])]
    prompt = render("propose", goal="Faster.", rules=CASES["speed, mixed"], repo_map="lib.py",
                    files={"lib.py": "x = 1\n"}, readonly=[], attempts=attempts,
                    files_omitted=0)
    line = next(x for x in prompt.splitlines() if x.startswith("- #1 rejected: "))
    summary = line.removeprefix("- #1 rejected: ")
    assert "```text\nreason: tests failed\n```" in prompt  # the judge's words, quoted
    assert len(summary) <= SUMMARY_CHARS
    assert summary.endswith("…") and LONG.startswith(summary.rstrip(" …"))
    assert LONG[len(summary.rstrip(" …"))] in " .", "cut inside a word"
    assert "A second line" not in prompt
    assert "- #2 malformed: (no rationale)" in prompt
