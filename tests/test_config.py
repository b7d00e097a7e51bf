import pytest

from selfcode.config import load_settings, state_dir
from selfcode.errors import ConfigError


def write(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    return tmp_path


def test_defaults():
    s = load_settings(None, environ={})
    assert s.sandbox.backend == "docker"
    assert s.gate.alpha == 0.01 and s.gate.min_improvement == 0.03
    assert "**/conftest.py" in s.gate.protected


def test_precedence_file_env_cli(tmp_path):
    write(tmp_path, "pyproject.toml", """
[tool.selfcode]
model = "from-file"
benchmarks = { sort = "python bench/sort.py" }
[tool.selfcode.sandbox]
timeout = 11
memory = "1g"
""")
    s = load_settings(tmp_path, environ={})
    assert (s.llm.model, s.sandbox.timeout, s.sandbox.memory) == ("from-file", 11, "1g")
    assert s.gate.benchmarks == {"sort": "python bench/sort.py"}
    s = load_settings(tmp_path, environ={"SELFCODE_MODEL": "from-env", "SELFCODE_TIMEOUT": "22"})
    assert (s.llm.model, s.sandbox.timeout) == ("from-env", 22)
    s = load_settings(tmp_path, {"llm": {"model": "from-cli"}},
                      environ={"SELFCODE_MODEL": "from-env"})
    assert s.llm.model == "from-cli"
    assert s.sandbox.timeout == 11  # lower layers show through where the upper one is silent


def test_selfcode_toml_wins_over_pyproject(tmp_path):
    write(tmp_path, "pyproject.toml", '[tool.selfcode]\nmodel = "pyproject"\n')
    write(tmp_path, "selfcode.toml", 'model = "selfcode-toml"\n')
    assert load_settings(tmp_path, environ={}).llm.model == "selfcode-toml"


@pytest.mark.parametrize(
    "text, message",
    [
        ("[tool.selfcode]\nmodle = 'x'\n", "Unknown configuration key 'modle'"),
        ("[tool.selfcode.sandbox]\ntimeout = 'soon'\n", "'sandbox.timeout'"),
        ("[tool.selfcode.sandbox]\nbackend = 'vm'\n", "'sandbox.backend'"),
        ("[tool.selfcode.llm]\nbase_url = 'http://127.0.0.1:9/v1'\n", "'llm.base_url' in"),
        ("[tool.selfcode.sandbox]\nbackend = 'local'\n", "may not choose"),
        ("[tool.selfcode]\nprotected = []\n", "'gate.protected'"),
        ("[tool.selfcode\n", "Cannot read the configuration"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, message):
    write(tmp_path, "pyproject.toml", text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as info:
        load_settings(tmp_path, environ={})
    assert "pyproject.toml" in str(info.value) or "Cannot read" in str(info.value)


def test_bad_env_value_names_the_layer(tmp_path):
    with pytest.raises(ConfigError, match="SELFCODE_\\* environment"):
        load_settings(tmp_path, environ={"SELFCODE_PAIRS": "many"})


def test_state_dir_and_selfcode_home(tmp_path):
    assert state_dir(tmp_path / ".git", environ={}) == tmp_path / ".git" / "selfcode"
    moved = tmp_path / "elsewhere"
    one = state_dir(tmp_path / "one" / ".git", environ={"SELFCODE_HOME": str(moved)})
    two = state_dir(tmp_path / "two" / ".git", environ={"SELFCODE_HOME": str(moved)})
    assert one.parent == two.parent == moved
    assert one != two and one.name.startswith("one-")
    assert one.is_dir()


def test_protect_also_extends_the_defaults(tmp_path):
    write(tmp_path, "pyproject.toml", '[tool.selfcode]\nprotect_also = ["src/pkg/gate.py"]\n')
    protected = load_settings(tmp_path, environ={}).gate.protected
    assert "src/pkg/gate.py" in protected and "**/conftest.py" in protected


def test_git_identity_from_file_and_environment(tmp_path):
    write(tmp_path, "pyproject.toml",
          '[tool.selfcode.git]\nauthor = "Bot <bot@example.com>"\nhooks = true\n')
    git = load_settings(tmp_path, environ={}).git
    assert (git.author, git.hooks, git.attribution) == (
        "Bot <bot@example.com>", True, "selfcode <selfcode@localhost>")
    git = load_settings(tmp_path, environ={
        "SELFCODE_GIT_CO_AUTHORS": "A <a@x>; B <b@y>", "SELFCODE_GIT_ATTRIBUTION": ""}).git
    assert git.co_authors == ["A <a@x>", "B <b@y>"] and git.attribution is None


def test_the_old_gate_goal_key_names_its_new_name(tmp_path):
    write(tmp_path, "pyproject.toml", '[tool.selfcode.gate]\ngoal = "speed"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, environ={})
    message = str(info.value)
    assert "'gate.goal' is now 'gate.judge'" in message
    assert "[tool.selfcode.gate] judge" in message and "--judge" in message
    assert "[tool.selfcode.agent] goal" in message and "pyproject.toml" in message
    assert message.endswith(".") and ". " not in message  # one sentence


def test_judge_and_goal_are_separate_keys(tmp_path):
    write(tmp_path, "pyproject.toml", '[tool.selfcode.gate]\njudge = "fix"\n'
                                      '[tool.selfcode.agent]\ngoal = "Make parsing faster."\n')
    s = load_settings(tmp_path, environ={})
    assert (s.gate.judge, s.agent.goal) == ("fix", "Make parsing faster.")
    assert load_settings(tmp_path, environ={"SELFCODE_GATE_JUDGE": "metric"}).gate.judge == "metric"
    s = load_settings(tmp_path, {"gate": {"judge": "speed"}},
                      environ={"SELFCODE_GATE_JUDGE": "metric"})
    assert s.gate.judge == "speed" and s.agent.goal == "Make parsing faster."
    with pytest.raises(ConfigError, match=r"'gate\.judge' in the SELFCODE_\* environment"):
        load_settings(None, environ={"SELFCODE_GATE_JUDGE": "fast"})


def test_settings_a_run_stored_before_the_rename_still_resume():
    from selfcode.config import Settings, upgrade_stored

    stored = Settings().model_dump(mode="json")
    stored["gate"]["goal"] = "fix"
    del stored["gate"]["judge"]
    assert Settings.model_validate(upgrade_stored(stored)).gate.judge == "fix"
    current = Settings().model_dump(mode="json")
    assert upgrade_stored(current) == current
