import math

import pytest

from selfcode.gate.stats import compare, log_ratios, wilcoxon_p

BASE = [1.00, 1.02, 0.98, 1.01, 0.99, 1.03, 0.97, 1.00, 1.02, 0.98]


@pytest.mark.parametrize(
    "diffs, alternative, expected",
    [
        # All ten pairs favour the candidate: the exact one-sided p-value is 1 / 2**10.
        ([-0.1] * 10, "less", 1 / 1024),
        ([-0.1] * 10, "greater", 1.0),
        # Ranks 1..5, all positive: exact p = 1 / 2**5 for "greater".
        ([0.1, 0.2, 0.3, 0.4, 0.5], "greater", 1 / 32),
        # No difference at all is no evidence either way.
        ([0.0] * 8, "less", 1.0),
        ([], "less", 1.0),
    ],
)
def test_wilcoxon_known_values(diffs, alternative, expected):
    assert wilcoxon_p(diffs, alternative) == pytest.approx(expected)


@pytest.mark.parametrize(
    "factor, min_improvement, verdict",
    [
        (0.50, 0.03, "faster"),
        (0.96, 0.03, "faster"),
        (0.98, 0.03, "same"),  # significant but smaller than the 3 % the gate asks for
        (1.00, 0.03, "same"),
        (1.30, 0.03, "slower"),
    ],
)
def test_compare_decides_by_significance_and_size(factor, min_improvement, verdict):
    candidate = [b * factor for b in BASE]
    assert compare(BASE, candidate, alpha=0.01, min_improvement=min_improvement).verdict == verdict


def test_compare_reports_the_median_ratio():
    result = compare(BASE, [b * 0.8 for b in BASE], alpha=0.01, min_improvement=0.03)
    assert result.ratio == pytest.approx(0.8)
    assert result.p_faster == pytest.approx(1 / 1024)


def test_noise_alone_is_not_faster():
    candidate = [1.01, 0.99, 1.00, 1.02, 0.98, 1.00, 1.01, 0.99, 1.00, 1.01]
    assert compare(BASE, candidate, alpha=0.01, min_improvement=0.03).verdict == "same"


def test_log_ratios_rejects_bad_samples():
    assert log_ratios([2.0], [1.0]) == [pytest.approx(math.log(0.5))]
    with pytest.raises(ValueError):
        log_ratios([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        log_ratios([0.0], [1.0])


def test_instruction_decision():
    from selfcode.gate.stats import instruction_decision

    assert instruction_decision({"a": 0.98, "b": 1.0}).improved
    assert not instruction_decision({"a": 0.995}).improved  # under 1 % is not a gain
    worse = instruction_decision({"a": 0.5, "b": 1.02})
    assert not worse.improved and worse.worse == ["b"]
    assert instruction_decision({"a": 0.25, "b": 1.0}).geomean_ratio == pytest.approx(0.5)


def test_aa_noise_and_delta():
    from selfcode.gate.stats import aa_noise, implied_delta

    flat = aa_noise([1.0] * 5, [1.0] * 5)
    assert flat.cv == 0 and flat.p95_ratio == 1 and implied_delta(flat, 0.03) == 0.03
    noisy = aa_noise([1.0, 1.0, 1.0, 1.0], [1.1, 0.9, 1.1, 0.9])
    # log ratios ±0.0953/−0.1054: median −0.005, every deviation 0.1003, MAD x 1.4826.
    assert noisy.cv == pytest.approx(0.1487, abs=1e-3)
    outlier = aa_noise([1.0] * 8, [1.0, 1.01, 0.99, 1.0, 1.01, 0.99, 1.0, 2.0])
    assert outlier.cv < 0.02  # one descheduled run does not define the noise
    assert implied_delta(noisy, 0.03) == pytest.approx(2 * noisy.cv)
    assert noisy.p95_ratio == pytest.approx(1 / 0.9)


@pytest.mark.parametrize(
    "rule, a, b, expected",
    [
        ("single_run_rule", [1.0, 1.0], [0.9, 1.2], True),
        ("min_of_runs_rule", [1.0, 0.8], [0.9, 0.85], False),
        ("min_of_runs_rule", [1.0, 1.0], [0.9, 1.2], True),
        ("median_rule", [1.0, 1.0, 1.0], [0.9, 0.9, 1.2], True),
        ("median_rule", [1.0, 1.0, 1.0], [0.97, 0.97, 0.9], False),
    ],
)
def test_other_tools_rules(rule, a, b, expected):
    import selfcode.gate.stats as s

    assert getattr(s, rule)(a, b) is expected
