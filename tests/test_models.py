"""Several models (issue 13 item 6): `--model a,b,c`, each at its own endpoint (host-only),
a pool that chooses the model of each candidate with a cost-aware bandit, and per-model
requests, acceptances and cost in `show`, `show --json` and `report`.

The real openai client against two tests/openai_server.py servers (two models at two base
URLs); real git repositories and a real history.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfcode.cli.app import app
from selfcode.config import LLMConfig, load_settings
from selfcode.doctor.endpoint import endpoint_checks
from selfcode.errors import ConfigError
from selfcode.git.store import GitStore
from selfcode.history.db import HISTORY_FILE, History
from selfcode.history.rows import Exchange, ModelUsage
from selfcode.history.views import ModelFigures, load_run, model_figures
from selfcode.llm import RetriesExhausted
from selfcode.llm.pool import ModelPool
from selfcode.search.bandit import ModelStats
from selfcode.testing import FunctionLLM

from openai_server import Fault, OpenAIServer
from repos import make_repo

runner = CliRunner()
KEY = {"OPENAI_API_KEY": "sk-test"}
PRICED = {"alpha": {"input": 1.0, "output": 2.0}}  # beta has no price: its cost is unknown
ASK = [{"role": "user", "content": "make it faster"}]


@pytest.fixture
def two_servers() -> Iterator[tuple[OpenAIServer, OpenAIServer]]:
    with OpenAIServer() as first, OpenAIServer() as second:
        yield first, second


def _config(alpha: OpenAIServer, beta: OpenAIServer, **llm: object) -> LLMConfig:
    """`--model alpha,beta --base-url ALPHA --endpoint beta=BETA`, as the flags give them."""
    flags = {"model": "alpha,beta", "base_url": alpha.base_url,
             "endpoints": [f"beta={beta.base_url}"], "prices": PRICED, **llm}
    return load_settings(None, {"llm": flags}, environ={}).llm


def _pool(config: LLMConfig) -> ModelPool:
    return ModelPool.from_config(config, environ=KEY, sleep=lambda seconds: None)


# --- configuration ---------------------------------------------------------------------------


def test_one_model_name_stays_exactly_as_given() -> None:
    llm = load_settings(None, {"llm": {"model": "llama3.2:1b"}}, environ={}).llm
    assert llm.model == "llama3.2:1b" and llm.models == ("llama3.2:1b",)
    assert llm.for_model("llama3.2:1b") == llm  # no endpoints: nothing changes


def test_a_list_of_models_from_the_flag_the_environment_or_the_file(tmp_path: Path) -> None:
    flag = load_settings(None, {"llm": {"model": "a, b,c"}}, environ={}).llm
    assert flag.model == "a,b,c" and flag.models == ("a", "b", "c")
    env = load_settings(None, environ={"SELFCODE_MODEL": "x,y"}).llm
    assert env.models == ("x", "y")
    (tmp_path / "pyproject.toml").write_text('[tool.selfcode]\nmodel = ["p", "q"]\n')
    assert load_settings(tmp_path, environ={}).llm.models == ("p", "q")


@pytest.mark.parametrize("value, words", [
    ("a,,b", "has an empty model name"),
    ("a,b,a", "names a model twice"),
])
def test_a_list_with_an_empty_or_repeated_name_is_refused(value: str, words: str) -> None:
    with pytest.raises(ConfigError, match=f"'llm.model' in the command line is invalid.*{words}"):
        load_settings(None, {"llm": {"model": value}}, environ={})


def test_each_model_is_asked_at_its_own_endpoint_else_at_the_base_url() -> None:
    llm = load_settings(None, {"llm": {"model": "a,b", "base_url": "http://h:1/v1",
                                       "endpoints": ["b=http://h:2/v1"]}}, environ={}).llm
    assert llm.for_model("a").base_url == "http://h:1/v1"
    assert (llm.for_model("b").model, llm.for_model("b").base_url) == ("b", "http://h:2/v1")
    env = load_settings(None, environ={"SELFCODE_MODEL": "a,b",
                                       "SELFCODE_ENDPOINTS": "a=http://e:1/v1 b=http://e:2/v1"})
    assert env.llm.endpoints == {"a": "http://e:1/v1", "b": "http://e:2/v1"}
    with pytest.raises(ConfigError, match="'b' is not MODEL=URL"):
        load_settings(None, {"llm": {"endpoints": ["b"]}}, environ={})


@pytest.mark.parametrize("text", [
    "[tool.selfcode.llm.endpoints]\n'model-b' = 'http://attacker.example/v1'\n",
    "[tool.selfcode.llm]\nendpoints = { 'model-b' = 'http://attacker.example/v1' }\n",
])
def test_the_repository_may_not_choose_where_a_model_is_asked(tmp_path: Path, text: str) -> None:
    # The API key goes to every model's endpoint: a branch may not name one.
    (tmp_path / "pyproject.toml").write_text(text)
    with pytest.raises(ConfigError, match=r"'llm.endpoints' in .*pyproject.toml is refused: the "
                       r"repository may not choose where your API key goes.*--endpoint "
                       r"MODEL=URL or SELFCODE_ENDPOINTS"):
        load_settings(tmp_path, environ={})


def test_the_endpoint_flag_reaches_the_configuration(tmp_path: Path) -> None:
    result = runner.invoke(app, ["improve", str(tmp_path), "--model", "a,b",
                                 "--endpoint", "b-at-nowhere"])
    assert result.exit_code == 2
    assert "'b-at-nowhere' is not MODEL=URL" in " ".join(result.stderr.split())


def test_doctor_checks_every_model_at_its_endpoint(two_servers) -> None:
    alpha, beta = two_servers
    alpha.script("ok")
    beta.script(Fault.status(401))
    settings = load_settings(None, {"llm": {"model": "alpha,beta", "base_url": alpha.base_url,
                                            "endpoints": [f"beta={beta.base_url}"]}},
                             environ={})
    checks = endpoint_checks(settings, KEY)
    assert [(c.name, c.ok) for c in checks] == [("model endpoint (alpha)", True),
                                                ("model endpoint (beta)", False)]
    assert checks[1].detail.startswith(beta.base_url)
    assert [r["model"] for r in alpha.requests] == ["alpha"]
    assert [r["model"] for r in beta.requests] == ["beta"]


# --- the pool --------------------------------------------------------------------------------


def _ask(pool: ModelPool, rng: random.Random, accept: set[str]) -> str:
    """One candidate's request and its verdict settled: what the loop does."""
    llm = pool.choose(rng)
    try:
        llm.complete(ASK)
    except RetriesExhausted:
        pool.settle(llm.model, accepted=False)
        return llm.model
    pool.settle(llm.model, accepted=llm.model in accept)
    return llm.model


def test_a_pool_asks_each_model_at_its_endpoint_and_tries_both(two_servers) -> None:
    alpha, beta = two_servers
    alpha.script(*["alpha says"] * 40)
    beta.script(*["beta says"] * 40)
    pool = _pool(_config(alpha, beta))
    assert pool.models == ("alpha", "beta")
    rng = random.Random(13)
    chosen = [_ask(pool, rng, accept={"beta"}) for _ in range(30)]
    assert set(chosen) == {"alpha", "beta"}
    # Each model was asked where it lives, by its own name.
    assert [r["model"] for r in alpha.requests] == ["alpha"] * chosen.count("alpha")
    assert [r["model"] for r in beta.requests] == ["beta"] * chosen.count("beta")
    stats = pool.stats()
    assert stats["alpha"].requests + stats["beta"].requests == 30
    assert (stats["alpha"].accepted, stats["beta"].accepted) == (0, chosen.count("beta"))
    # alpha is priced: 3 words in and 2 out per reply at $1/$2 per million tokens.
    assert stats["alpha"].cost_usd == pytest.approx(chosen.count("alpha") * 7e-6)
    # beta is unpriced: counted as such, its cost unknown rather than $0.
    assert (stats["beta"].cost_usd, stats["beta"].unpriced) == (0.0, chosen.count("beta"))
    assert chosen.count("beta") > chosen.count("alpha")  # the one that is accepted


def test_a_model_whose_every_request_fails_is_not_chosen_forever(two_servers) -> None:
    alpha, beta = two_servers
    alpha.script(*[Fault.status(500)] * 200)
    beta.script(*["beta says"] * 60)
    pool = _pool(_config(alpha, beta, max_retries=1, prices={}))
    rng = random.Random(5)
    chosen = [_ask(pool, rng, accept={"beta"}) for _ in range(40)]
    assert 1 <= chosen.count("alpha") <= 12, chosen  # explored, then left to the floor
    assert len(alpha.requests) == 2 * chosen.count("alpha")  # each retried once, by the client
    assert pool.stats()["alpha"] == ModelStats(requests=chosen.count("alpha"))


class _NoDraws(random.Random):
    def random(self) -> float:
        raise AssertionError("a pool of one model drew a random number")

    def getrandbits(self, k: int) -> int:
        raise AssertionError("a pool of one model drew a random number")


def test_a_pool_of_one_model_is_that_model_without_the_bandit(openai_server) -> None:
    openai_server.script("one", "two")
    config = load_settings(None, {"llm": {"model": "solo", "base_url": openai_server.base_url}},
                           environ={}).llm
    pool = _pool(config)
    first, second = pool.choose(_NoDraws()), pool.choose(_NoDraws())
    assert first.llm is second.llm and first.model == "solo" and len(pool) == 1
    assert first.complete(ASK).text == "one"
    assert pool.stats() == {"solo": ModelStats(requests=2, unpriced=1)}


def test_a_replay_is_one_model_whatever_the_list(tmp_path: Path) -> None:
    replay = tmp_path / "replies.jsonl"
    replay.write_text(json.dumps({"reply": "recorded"}) + "\n")
    config = LLMConfig(model="a,b", replay=replay)
    pool = _pool(config)
    assert pool.models == ("replay",)
    assert pool.choose(_NoDraws()).complete(ASK).text == "recorded"


def test_the_pool_counts_exactly_with_candidates_in_flight() -> None:
    pool = ModelPool({name: FunctionLLM(lambda messages: "reply", model=name)
                      for name in ("a", "b", "c")})
    seen: list[str] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(50):
            llm = pool.choose(rng)
            llm.complete(ASK)
            llm.complete(ASK)  # a repair turn: one more request of the same model
            pool.settle(llm.model, accepted=True)
            seen.append(llm.model)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = pool.stats()
    assert sum(s.requests for s in stats.values()) == 800 == 2 * len(seen)
    for name, s in stats.items():
        assert s.requests == 2 * s.accepted == 2 * seen.count(name)
        assert s.cost_usd == 0.0 and s.unpriced == 0  # the fake's replies are priced, free


def test_a_resumed_pool_starts_from_the_history() -> None:
    pool = ModelPool({name: FunctionLLM(lambda messages: "r", model=name) for name in "ab"})
    pool.restore({"a": ModelStats(requests=4, accepted=1, unpriced=4),
                  "gone": ModelStats(requests=9, accepted=9, cost_usd=1.0)})
    assert pool.stats() == {"a": ModelStats(requests=4, accepted=1, unpriced=4),
                            "b": ModelStats()}


# --- per-model figures -----------------------------------------------------------------------


def _usage(n: int | None, model: str, exchanges: int, last_id: int, cost: float = 0.0,
           unpriced: int = 0) -> ModelUsage:
    return ModelUsage(n=n, model=model, exchanges=exchanges, cost_usd=cost, unpriced=unpriced,
                      last_id=last_id)


@pytest.mark.parametrize("usage, statuses, legacy, expected", [
    ([], {}, False, []),
    # A candidate counts for the model of its last exchange; requests count every exchange.
    ([_usage(1, "a", 1, 1, 0.5), _usage(1, "b", 2, 3, 0.25)], {1: "accepted"}, False,
     [ModelFigures(model="b", candidates=1, requests=2, accepted=1, cost_usd=0.25),
      ModelFigures(model="a", candidates=0, requests=1, accepted=0, cost_usd=0.5)]),
    # One unpriced reply makes the model's cost unknown; exchanges outside candidates count.
    ([_usage(1, "a", 2, 2, 0.5, unpriced=1), _usage(None, "a", 1, 3, 0.1),
      _usage(2, "b", 1, 4)], {1: "rejected", 2: "accepted"}, False,
     [ModelFigures(model="a", candidates=1, requests=3, accepted=0, cost_usd=None, unpriced=1),
      ModelFigures(model="b", candidates=1, requests=1, accepted=1, cost_usd=0.0)]),
    # A run recorded before unpriced replies were NULL: a model that cost $0 was unpriced.
    ([_usage(1, "a", 1, 1)], {1: "accepted"}, True,
     [ModelFigures(model="a", candidates=1, requests=1, accepted=1, cost_usd=None)]),
])
def test_model_figures(usage, statuses, legacy, expected) -> None:
    assert model_figures(usage, statuses, legacy) == expected


def _record_run(repo: Path, pool: ModelPool, rng: random.Random) -> tuple[str, dict[str, int]]:
    """A run of four candidates, recorded as the loop records them; how many were each
    model's."""
    store = GitStore(repo)
    chosen: dict[str, int] = {}
    with History(store.state_dir() / HISTORY_FILE) as history:
        run_id = "20260101-000000-ab12"
        history.start_run(run_id, str(repo), store.head_commit(), f"selfcode/{run_id}",
                          "faster", ",".join(pool.models), "local")
        for n in range(1, 5):
            history.add_candidate(run_id, n, store.head_commit())
            llm = pool.choose(rng)
            for turn in range(2 if n == 2 else 1):  # candidate 2 needed a repair turn
                reply = llm.complete([*ASK, {"role": "user", "content": f"try {n}.{turn}"}])
                history.add_exchange(Exchange(
                    run_id=run_id, candidate_n=n, turn=turn, model=llm.model, messages=ASK,
                    reply=reply.text, prompt_tokens=reply.usage.prompt_tokens,
                    completion_tokens=reply.usage.completion_tokens,
                    cost_usd=reply.cost_usd if reply.priced else None,
                    latency_s=reply.latency_s))
            ok = n % 2 == 0
            pool.settle(llm.model, ok)
            chosen[llm.model] = chosen.get(llm.model, 0) + 1
            history.update_candidate(run_id, n, status="accepted" if ok else "rejected",
                                     rationale=f"candidate {n}")
        history.finish_run(run_id, "finished", {"cost_known": False})
    store.close()
    return run_id, chosen


def test_show_and_report_give_each_models_requests_accepted_and_cost(
        tmp_path: Path, two_servers, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SELFCODE_HOME", raising=False)
    alpha, beta = two_servers
    alpha.script(*["alpha says"] * 5)
    beta.script(*["beta says"] * 5)
    repo = make_repo(tmp_path / "repo", {"lib.py": "x = 1\n"})
    pool = _pool(_config(alpha, beta))
    run_id, chosen = _record_run(repo, pool, random.Random(2))
    stats = pool.stats()
    assert set(chosen) == {"alpha", "beta"}, "the seed should have tried both models"

    shown = runner.invoke(app, ["show", run_id, str(repo), "--json"])
    assert shown.exit_code == 0, shown.output
    models = {m["model"]: m for m in json.loads(shown.stdout)["models"]}
    assert set(models) == {"alpha", "beta"}
    for name, figures in models.items():
        asked = len((alpha if name == "alpha" else beta).requests)
        assert figures["requests"] == asked == stats[name].requests
        assert figures["candidates"] == chosen[name]
        assert figures["accepted"] == stats[name].accepted
    assert sum(m["accepted"] for m in models.values()) == 2  # candidates 2 and 4
    assert models["alpha"]["cost_usd"] == pytest.approx(stats["alpha"].cost_usd)
    assert models["beta"]["cost_usd"] is None
    # What --resume gives the pool back is what the pool knew.
    store = GitStore(repo)
    with History(store.state_dir() / HISTORY_FILE) as history:
        figures = load_run(history, run_id).models
    store.close()
    assert {f.model: f.stats() for f in figures} == stats

    text = runner.invoke(app, ["show", run_id, str(repo)], terminal_width=200).stdout
    assert "requests" in text and "unpriced" in text
    markdown = runner.invoke(app, ["report", run_id, str(repo)]).stdout
    beta_row = (f"| beta | {models['beta']['candidates']} | {models['beta']['requests']} | "
                f"{models['beta']['accepted']} | unpriced |")
    assert "### Models\n\n| model | candidates | requests | accepted | cost |" in markdown
    assert beta_row in markdown
    html = runner.invoke(app, ["report", run_id, str(repo), "--format", "html"]).stdout
    assert "<h2>Models</h2>" in html and "<td>unpriced</td>" in html


def test_a_run_of_one_model_has_its_figures_but_no_models_table(
        tmp_path: Path, openai_server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SELFCODE_HOME", raising=False)
    openai_server.script(*["solo says"] * 5)
    repo = make_repo(tmp_path / "repo", {"lib.py": "x = 1\n"})
    config = load_settings(None, {"llm": {"model": "solo", "base_url": openai_server.base_url,
                                          "prices": {"solo": {"input": 1, "output": 1}}}},
                           environ={}).llm
    run_id, _ = _record_run(repo, _pool(config), random.Random(0))
    shown = json.loads(runner.invoke(app, ["show", run_id, str(repo), "--json"]).stdout)
    assert [(m["model"], m["candidates"], m["requests"], m["accepted"]) for m in
            shown["models"]] == [("solo", 4, 5, 2)]
    assert "### Models" not in runner.invoke(app, ["report", run_id, str(repo)]).stdout
