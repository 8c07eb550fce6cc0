"""`stepgap compare`: ratios, identity, and divergences classified."""

import json
import shutil

import pytest
from typer.testing import CliRunner

import stepgap
from stepgap.cli import app
from stepgap.identity import compare_tokens


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_identical_runs_compare_identical(both_run):
    result = invoke("compare", both_run / "sync", both_run / "overlap", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["tokens_identical"] is True and data["identity"]["first"] is None
    assert data["metrics"]["gap_p50_us"]["ratio"] < 1


SMOKE_SYNC = ["run", "--device", "cpu", "--workload", "smoke", "--num-requests", "16"]


def test_other_seed_diverges_and_is_located_but_is_not_a_verdict(both_run, tmp_path):
    """Issue 15: another workload seed means other prompts and sampling seeds, so different
    tokens are no logic error (nor a near-tie): the runs are not comparable, and say why."""
    other = tmp_path / "seed9"
    assert invoke(*SMOKE_SYNC, "--mode", "sync", "--seed", "9", "--out", other).exit_code == 0
    result = invoke("compare", both_run / "sync", other)
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "requests differ; first at request 0 position" in text
    assert "not comparable (different workload seed: 0 vs 9)" in text
    data = json.loads(invoke("compare", both_run / "sync", other, "--json").stdout)
    first = data["identity"]["first"]
    assert first["request_id"] == 0 and first["verdict"] == "not comparable"


def test_other_model_is_not_comparable(both_run, tmp_path):
    other = tmp_path / "two-layers"
    args = [*SMOKE_SYNC, "--mode", "sync", "--model-override", "num_layers=2"]
    assert invoke(*args, "--out", other).exit_code == 0
    data = json.loads(invoke("compare", both_run / "sync", other, "--json").stdout)
    assert data["identity"]["first"]["verdict"] == "not comparable"
    assert data["identity"]["differences"] == [
        "different model: ernie-4.5-tiny vs ernie-4.5-tiny+num_layers=2"
    ]


def test_groups_compare_mode_by_mode_and_one_group_alone(both_run):
    data = json.loads(invoke("compare", both_run, both_run, "--json").stdout)
    assert [c["a"] for c in data["comparisons"]] == ["smoke-sync", "smoke-overlap"]
    assert all(c["tokens_identical"] for c in data["comparisons"])
    alone = json.loads(invoke("compare", both_run, "--json").stdout)
    assert (alone["a"], alone["b"]) == ("smoke-sync", "smoke-overlap")
    gap = alone["metrics"]["gap_p50_us"]
    assert gap["noise"]["low"] <= gap["ratio"] <= gap["noise"]["high"]
    table = invoke("compare", both_run)
    assert table.exit_code == 0 and "95% noise" in table.stdout


def test_planted_token_change_is_a_logic_error_and_near_tie_is_recognised(both_run):
    run = stepgap.load_run(both_run / "sync")
    changed = {rid: list(t) for rid, t in run.tokens.items()}
    changed[3][5] = (changed[3][5] + 1) % 512
    identity = compare_tokens(run.tokens, changed, run.margins, run.margins)
    assert (identity.first.request_id, identity.first.position) == (3, 5)
    assert identity.requests_differing == 1
    expected = "numerical near-tie" if run.margins[3][5] < 0.05 else "logic error"
    assert identity.first.verdict == expected
    tied = {rid: list(m) for rid, m in run.margins.items()}
    tied[3][5] = 0.001
    assert compare_tokens(run.tokens, changed, tied, tied).first.verdict == "numerical near-tie"
    shorter = {rid: list(t) for rid, t in run.tokens.items()}
    shorter[2] = shorter[2][:-1]
    assert compare_tokens(run.tokens, shorter).first.verdict == "logic error"


@pytest.mark.parametrize("breakage", ["missing", "not_a_run", "bad_json", "incomplete"])
def test_bad_run_directories(both_run, tmp_path, breakage):
    target = tmp_path / "run"
    if breakage != "missing":
        shutil.copytree(both_run / "sync", target)
    if breakage == "not_a_run":
        (target / "run.json").unlink()
    elif breakage == "bad_json":
        (target / "run.json").write_text("{")
    elif breakage == "incomplete":
        meta = json.loads((target / "run.json").read_text())
        meta |= {"complete": False, "incomplete_reason": "interrupted (Ctrl-C)"}
        (target / "run.json").write_text(json.dumps(meta))
    result = invoke("compare", both_run / "sync", target)
    if breakage == "incomplete":  # still comparable, but said plainly
        assert result.exit_code == 0 and "incomplete" in result.output  # a warning: stderr
        return
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_runs_without_tokens_say_so_instead_of_identical(both_run, tmp_path):
    for name in ("a", "b"):
        shutil.copytree(both_run / "sync", tmp_path / name)
        (tmp_path / name / "tokens.jsonl").write_text("")  # as an analyzed trace: no tokens
    result = invoke("compare", tmp_path / "a", tmp_path / "b")
    assert result.exit_code == 0 and "not recorded" in result.stdout
    data = json.loads(invoke("compare", tmp_path / "a", tmp_path / "b", "--json").stdout)
    assert data["tokens_identical"] is None
