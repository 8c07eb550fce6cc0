"""The rules file: every check form parses to the right rule; every mistake names its line."""

import pytest
from gate_plant import REPO

from stepgap.gate.noise import NoiseSettings
from stepgap.gate.rules import RulesError, load_rules, parse_check, parse_rules


@pytest.mark.parametrize(
    ("check", "kind", "subject", "op", "target", "tolerance", "modes"),
    [
        ("overlap.gap_p50_us <= 30", "bound", "overlap.gap_p50_us", "<=", 30.0, None, None),
        ("gap_p99_us < 1e3", "bound", "gap_p99_us", "<", 1000.0, None, None),
        (
            "overlap/sync output_throughput_tok_s >= 1.05",
            "ratio",
            "output_throughput_tok_s",
            ">=",
            1.05,
            None,
            ("overlap", "sync"),
        ),
        ("tpot_p50_ms <= baseline + 5%", "regression", "tpot_p50_ms", "<=", None, 5.0, None),
        (
            "overlap.output_throughput_tok_s >= baseline - 2.5 %",
            "regression",
            "overlap.output_throughput_tok_s",
            ">=",
            None,
            -2.5,
            None,
        ),
        ("itl_p50_ms <= baseline", "regression", "itl_p50_ms", "<=", None, 0.0, None),
        ("tokens_identical = true", "fact", "tokens_identical", "==", True, None, None),
        ("verify.passed != false", "fact", "verify.passed", "!=", False, None, None),
    ],
)
def test_each_check_form_parses(check, kind, subject, op, target, tolerance, modes):
    rule = parse_check(check)
    assert (rule.kind, rule.subject, rule.op, rule.modes) == (kind, subject, op, modes)
    assert rule.target == target and type(rule.target) is type(target)
    assert rule.tolerance_pct == tolerance
    assert rule.name == check


def test_regression_direction_follows_the_operator():
    assert parse_check("tpot_p50_ms <= baseline + 5%").lower_is_better
    assert not parse_check("output_throughput_tok_s >= baseline - 5%").lower_is_better


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ("gap_p50_us", "expected SUBJECT OP TARGET"),
        ("gap_p50_us <= fast", "cannot read target 'fast'"),
        ("gap_p50_us <= nan", "finite"),
        ("gap p50 <= 3", "cannot read subject"),
        ("sync/sync gap_p50_us < 1", "two different modes"),
        ("tokens_identical <= true", "== or !="),
        ("overlap/sync idle_fraction == true", "compares with a number"),
        ("tpot_p50_ms == baseline + 5%", "which way is worse"),
        ("tpot_p50_ms <= baseline * 2", "cannot read target"),
    ],
)
def test_malformed_checks_say_what_is_wrong(check, message):
    with pytest.raises(RulesError, match=message):
        parse_check(check)


RULES = """\
# gates for the nightly job
[noise]
confidence = 0.9
seed = 7

[[rule]]
check = "tokens_identical == true"

[[rule]]
name = "overlap gaps"
check = "overlap.gap_p50_us <= 30"
description = "why it matters"
"""


def test_rules_file_parses_with_names_lines_and_noise_settings():
    rules = parse_rules(RULES, "gates.toml")
    assert [r.check for r in rules.rules] == [
        "tokens_identical == true",
        "overlap.gap_p50_us <= 30",
    ]
    assert [r.line for r in rules.rules] == [7, 11]
    assert rules.rules[1].name == "overlap gaps"
    assert rules.rules[1].description == "why it matters"
    assert rules.noise == NoiseSettings(confidence=0.9, resamples=2000, seed=7)
    assert not rules.needs_baseline


def test_bad_expression_names_file_line_and_rule():
    text = RULES + '\n[[rule]]\ncheck = "gap_p50_us =< 3"\n'
    with pytest.raises(RulesError) as error:
        parse_rules(text, "gates.toml")
    assert str(error.value).startswith("gates.toml line 15: rule 3: cannot read")


def test_toml_syntax_error_names_the_line():
    text = '[[rule]]\ncheck = "a <= 1"\n\n[[rule]]\ncheck = gap_p50_us <= 3\n'
    with pytest.raises(RulesError, match=r"gates.toml: malformed TOML: .*line 5"):
        parse_rules(text, "gates.toml")


def test_unknown_rule_key_names_its_line_and_the_valid_keys():
    text = '[[rule]]\ncheck = "gap_p50_us <= 3"\nthreshold = 4\n'
    with pytest.raises(RulesError) as error:
        parse_rules(text, "g.toml")
    assert str(error.value) == (
        "g.toml line 3: rule 1: unknown key 'threshold' (valid: check, name, description)"
    )


def test_rule_without_check_names_its_line():
    with pytest.raises(RulesError, match=r"g.toml line 4: rule 2: needs check = "):
        parse_rules('[[rule]]\ncheck = "gap_p50_us <= 3"\n\n[[rule]]\nname = "x"\n', "g.toml")


def test_unknown_top_level_key_and_bad_noise_settings():
    with pytest.raises(RulesError, match=r"g.toml line 1: unknown top-level key 'rules'"):
        parse_rules('rules = ["gap_p50_us <= 3"]\n', "g.toml")
    base = '[[rule]]\ncheck = "gap_p50_us <= 3"\n'
    with pytest.raises(RulesError, match=r"line 3: \[noise\]: confidence must be in"):
        parse_rules(base + "[noise]\nconfidence = 2\n", "g.toml")
    with pytest.raises(RulesError, match=r"\[noise\]: unknown key 'level'"):
        parse_rules(base + "[noise]\nlevel = 2\n", "g.toml")


def test_empty_rules_file_and_missing_file_are_errors(tmp_path):
    with pytest.raises(RulesError, match="no \\[\\[rule\\]\\] tables"):
        parse_rules("# nothing yet\n", "g.toml")
    with pytest.raises(RulesError, match="does not exist"):
        load_rules(tmp_path / "absent.toml")


def test_committed_dogfood_rules_parse():
    rules = load_rules(REPO / "gates" / "ci.toml")
    assert [r.kind for r in rules.rules] == ["fact", "ratio"]
    assert rules.rules[1].modes == ("overlap", "sync")
