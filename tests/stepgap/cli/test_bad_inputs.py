"""Issue 15: bad input of every kind — output paths, corrupt run directories, sizes, model
overrides, Ctrl-C — through `CliRunner` and real processes. Each must end in exactly one
plain-text error line (exit 2, or 130 for Ctrl-C), no traceback, before any model is built,
and must leave every file that was there before unchanged (digests before and after)."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import stepgap
from stepgap.cli import app

ROOT = Path(__file__).resolve().parents[3]
TRACE = ROOT / "tests" / "data" / "analyze" / "vllm_graph_sync.trace.json.gz"
RUN = ["run", "--device", "cpu", "--mode", "sync", "--num-requests", "4", "--output-len", "4"]
NOT_WRITABLE = Path("/sys/stepgap-bad-input")  # EPERM even for root, unlike chmod 0555


def digests(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, by relative path."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def place(tmp_path, monkeypatch, both_run):
    """A working directory holding what a user would not want to lose: notes, a file, a
    finished run and group, earlier outputs. Every test checks they are unchanged."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "ideas.txt").write_text("my notes\n")
    (tmp_path / "afile").write_text("not a directory\n")
    (tmp_path / "report.html").write_text("<p>an earlier report</p>\n")
    (tmp_path / "trace.json").write_text("{}\n")
    (tmp_path / "verdict.json").write_text("{}\n")
    shutil.copytree(both_run, tmp_path / "group")
    shutil.copytree(both_run / "sync", tmp_path / "run")
    shutil.copytree(both_run / "sync", tmp_path / "notes-in-run")
    (tmp_path / "notes-in-run" / "README.txt").write_text("what I ran\n")
    before = digests(tmp_path)
    yield tmp_path
    after = digests(tmp_path)
    assert {k: after.get(k) for k in before} == before, "a file that was there changed"


DELETE, EDIT = "delete", "edit"  # corruptions: remove the file; edit it (_edit)


@pytest.fixture
def corrupt(place):
    """A copy of the finished run, broken: `corrupt(name, file, content)` writes `content`
    (text or bytes) to `file`, or removes it (DELETE), or edits it (EDIT)."""

    def make(name: str, file: str, content: str | bytes) -> Path:
        target = place / "broken" / name
        shutil.copytree(place / "run", target)
        if content == DELETE:
            (target / file).unlink()
        elif content == EDIT:
            _edit(target, name)
        elif isinstance(content, bytes):
            (target / file).write_bytes(content)
        else:
            (target / file).write_text(content)
        return target

    return make


def invoke(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(result, code: int = 2, contains: str = "") -> str:
    """The result is one `error: ...` line on stderr, exit `code`, no traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert result.exit_code == code, result.output
    assert contains in lines[0], lines[0]
    return lines[0]


# --- output paths of `run`: all refused before the engine is built -----------------------

RUN_PATHS = [
    (["--out", "."], "names no file or directory"),
    (["--out", ".", "--force"], "names no file or directory"),
    (["--out", "..", "--force"], "names no file or directory"),
    (["--out", "/", "--force"], "names no file or directory"),
    (["--out", "afile/sub"], "afile is not a directory"),
    (["--out", "afile"], "exists and is not a directory"),
    (["--out", "afile", "--force"], "exists and is not a directory"),
    (["--out", "notes"], "already exists; pass --force"),
    (["--out", "notes", "--force"], "not a stepgap run directory"),
    (["--out", "notes-in-run", "--force"], "not a stepgap run directory"),
    (["--out", "run"], "already exists; pass --force"),
    (["--out", "group"], "already exists; pass --force"),
    (["--out", "notes/ideas.txt/x"], "is not a directory"),
]


@pytest.fixture
def no_engine(monkeypatch):
    """Building an engine fails the test: the checks must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("the engine was built before the input was checked")

    monkeypatch.setattr("reference_engine.engine.Engine.__init__", refuse)


@pytest.mark.parametrize(("args", "message"), RUN_PATHS)
def test_run_output_paths(place, no_engine, args, message):
    one_line_error(invoke(*RUN, *args), contains=message)


def test_run_output_not_writable(place, no_engine):
    if os.access("/sys", os.W_OK) and not Path("/sys/kernel").exists():
        pytest.skip("no read-only /sys here")
    one_line_error(invoke(*RUN, "--out", NOT_WRITABLE), contains="is not writable")


def test_run_output_holding_the_working_directory(place, no_engine):
    one_line_error(invoke(*RUN, "--out", place.parent, "--force"), contains="working directory")


def test_brackets_in_paths_are_text_not_markup(place, no_engine):
    (place / "[bold]x[red]").mkdir()
    line = one_line_error(invoke(*RUN, "--out", "[bold]x[red]"))
    assert "[bold]x[red] already exists" in line


# --- sizes, bounds and model overrides ---------------------------------------------------

SIZES = [
    (["--concurrency", "1000000"], "concurrency = 1000000 is above the limit"),
    (["--output-len", "1000000000"], "output_len = 1000000000 is above the limit"),
    (["--num-requests", "100000000"], "num_requests = 100000000 is above the limit"),
    (["--concurrency", "0"], "concurrency must be >= 1"),
    (["--num-requests", "-5"], "num_requests must be >= 1"),
    (["--output-len", "0"], "output_len must be >= 1"),
    (["--model-override", "num_layers=abc"], "num_layers takes an integer, got 'abc'"),
    (["--model-override", "num_layers=2.5"], "num_layers takes an integer, got '2.5'"),
    (["--model-override", "router=relu"], "router must be one of sigmoid, softmax"),
    (["--model-override", "qkv_bias=maybe"], "qkv_bias takes true or false"),
    (["--model-override", "rope_theta=fast"], "rope_theta takes a number"),
    (["--model-override", "rope_theta=nan"], "out of range"),
    (["--model-override", "num_layers"], "KEY=VALUE"),
    (["--model-override", "=3"], "KEY=VALUE"),
    (["--model-override", "layers=2"], "unknown model override"),
    (["--model-override", "num_layers=99999999"], "out of range"),
    (["--model-override", "num_layers=0"], "num_layers must be > 0"),
    (["--model-override", "num_heads=3"], "multiple of num_kv_heads"),
    (["--goodput", "ttft:abc"], "must be a number of ms"),
    (["--goodput", "fast:3"], "KEY one of ttft, tpot, e2el"),
    (["--goodput", "ttft:-1"], "goodput SLO ttft must be in"),
    (["--goodput", "ttft:5", "--goodput", "ttft:6"], "ttft given twice"),
    (["--warmup-steps", "-1"], "warmup_steps must be in"),
    (["--profile", "--profile-steps", "10000000"], "profile_steps must be in"),
    (["--mode", "async"], "unknown mode 'async'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--workload", "nope"], "unknown workload 'nope'"),
    (["--workload", "missing.toml"], "does not exist"),
]


@pytest.mark.parametrize(("args", "message"), SIZES)
def test_sizes_and_overrides(place, no_engine, args, message):
    one_line_error(invoke(*RUN, *args, "--out", "new"), contains=message)
    assert not (place / "new").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--model-override", "vocab_size=900000", "--concurrency", "4000"],
        ["--concurrency", "4096", "--output-len", "100000"],
    ],
)
def test_memory_preflight_refuses_with_the_numbers(place, no_engine, args):
    result = invoke(*RUN, *args, "--out", "new")
    line = one_line_error(result, contains="this run needs")
    assert " GB on cpu, " in line and " GB available (" in line and "KV cache" in line


WORKLOAD_FILES = [
    ('base = "smoke"\nmodel_overrides = { num_layers = "abc" }\n', "num_layers must be an integer"),
    ('base = "smoke"\nmodel_overrides = "deep"\n', "model_overrides must be a table"),
    ('base = "smoke"\nmodel_overrides = { depth = 3 }\n', "unknown model override"),
    ('base = "smoke"\nconcurrency = 100000\n', "concurrency = 100000 is above the limit"),
    ('base = "smoke"\narrival = "poisson"\nrate_per_s = nan\n', "rate_per_s"),
    ('base = "smoke"\nrate_per_s = 1e9\n', "rate_per_s must be at most"),
    ("\x00\x01binary", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "message"), WORKLOAD_FILES)
def test_bad_workload_files(place, no_engine, text, message):
    (place / "w.toml").write_text(text)
    one_line_error(invoke(*RUN, "--workload", "w.toml", "--out", "new"), contains=message)


# --- output files of report, export, verify, gate ---------------------------------------

FILE_OUTPUTS = [
    (["report", "run", "-o", "report.html"], "exists; pass --force"),
    (["report", "run", "-o", "notes"], "is a directory"),
    (["report", "run", "-o", "run/r.html"], "is a run directory"),
    (["report", "run", "-o", "afile/r.html"], "afile is not a directory"),
    (["report", "run", "-o", "new.html", "--plots-dir", "afile"], "afile is not a directory"),
    (["export", "run", "--perfetto", "trace.json"], "exists; pass --force"),
    (["export", "run", "--perfetto", "notes"], "is a directory"),
    (["export", "run", "--perfetto", "afile/t.json"], "afile is not a directory"),
    (["export", "group", "--perfetto", "new.json"], "is a group of 2 runs"),
    (["verify", "--out", "notes"], "is a directory"),
    (["verify", "--out", "verdict.json"], "exists; pass --force"),
    (["verify", "--out", "afile/v.json"], "afile is not a directory"),
    (
        ["gate", "group", "--rules", "rules.toml", "--junit-xml", "notes/ideas.txt"],
        "not a stepgap gate report",
    ),
    (["gate", "group", "--rules", "rules.toml", "--markdown", "notes"], "is a directory"),
    (["analyze", TRACE, "--out", "."], "names no file or directory"),
    (["analyze", TRACE, "--out", "notes", "--force"], "not a stepgap run directory"),
    (["analyze", TRACE, "--out", "run"], "already exists"),
    (["analyze", "missing.json"], "missing.json"),
    (["analyze", TRACE, "--warmup-steps", "-1"], "--warmup-steps must be in"),
    (["compare", "afile", "run"], "afile is not a directory"),
    (["compare", "run"], "not a sync+overlap group"),
    (["compare", "notes", "run"], "holds no run"),
]


@pytest.mark.parametrize(("args", "message"), FILE_OUTPUTS)
def test_output_files_and_inputs(place, args, message):
    (place / "rules.toml").write_text('[[rule]]\ncheck = "tokens_identical == true"\n')
    one_line_error(invoke(*args), contains=message)


# --- corrupt and partial run directories -------------------------------------------------

BINARY = bytes(range(256)) * 8
CORRUPTIONS = [
    ("binary-steps", "steps.csv", BINARY, "steps.csv"),
    ("binary-requests", "requests.csv", BINARY, "requests.csv"),
    ("list-meta", "run.json", "[]\n", "expected a JSON object, got a list"),
    ("string-summary", "run.json", EDIT, "summary must be an object, got a string"),
    ("string-workload", "run.json", EDIT, "workload must be an object"),
    ("text-metric", "run.json", EDIT, "summary gap_p50_us must be a number or null"),
    ("schema-9", "run.json", EDIT, "unsupported schema version 9"),
    ("truncated-steps", "steps.csv", EDIT, "truncated"),
    ("short-requests", "requests.csv", EDIT, "a partial run directory"),
    ("no-tokens", "tokens.jsonl", DELETE, "tokens.jsonl is missing"),
    ("bad-tokens", "tokens.jsonl", '{"request_id": 0, "tokens": "abc"}\n', "tokens must be a list"),
    ("word-in-steps", "steps.csv", EDIT, "not a finite number"),
    ("no-columns", "steps.csv", "a,b\n1,2\n", "lacks column(s)"),
    ("empty-steps", "steps.csv", "", "it is empty"),
]


def _edit(target: Path, name: str) -> None:
    """The edits that need the original file's content."""
    meta_file = target / "run.json"
    meta = json.loads(meta_file.read_text())
    edits = {
        "string-summary": lambda m: m | {"summary": "fast"},
        "string-workload": lambda m: m | {"workload": "mine"},
        "text-metric": lambda m: m | {"summary": m["summary"] | {"gap_p50_us": "abc"}},
        "schema-9": lambda m: m | {"schema_version": 9},
    }
    if name in edits:
        meta_file.write_text(json.dumps(edits[name](meta)))
    steps, requests = target / "steps.csv", target / "requests.csv"
    if name == "truncated-steps":
        steps.write_bytes(steps.read_bytes()[:-7])
    elif name == "short-requests":
        requests.write_text("".join(requests.read_text().splitlines(keepends=True)[:-3]))
    elif name == "word-in-steps":
        lines = steps.read_text().splitlines(keepends=True)
        head = lines[0].split(",")
        cells = lines[2].split(",")
        cells[head.index("gap_before_us")] = "fast"
        steps.write_text("".join([*lines[:2], ",".join(cells), *lines[3:]]))


@pytest.mark.parametrize("command", ["compare", "report", "export", "gate"])
@pytest.mark.parametrize(("name", "file", "content", "message"), CORRUPTIONS)
def test_corrupt_runs(place, corrupt, command, name, file, content, message):
    target = corrupt(name, file, content)
    (place / "rules.toml").write_text('[[rule]]\ncheck = "gap_p50_us < 1e9"\n')
    args = {
        "compare": ["compare", "run", target],
        "report": ["report", target, "-o", "new.html"],
        "export": ["export", target, "--perfetto", "new.json"],
        "gate": ["gate", target, "--rules", "rules.toml"],
    }[command]
    one_line_error(invoke(*args), contains=message)
    assert not (place / "new.html").exists() and not (place / "new.json").exists()


# --- overwriting: only with --force, only runs, never half-written ----------------------


def test_force_replaces_a_run_only_once_the_new_one_is_complete(place):
    before = digests(place / "run")
    result = invoke(*RUN, "--out", "run", "--force")
    assert result.exit_code == 0, result.output
    assert digests(place / "run") != before and stepgap.load_run(place / "run").complete
    shutil.rmtree(place / "run")
    shutil.copytree(place / "group" / "sync", place / "run")  # the fixture's check


class _Frozen(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2026, 1, 2, 3, 4, 5)


def test_two_runs_in_the_same_second_get_two_directories(place, monkeypatch):
    monkeypatch.setattr("stepgap.output_paths.dt", type("dt", (), {"datetime": _Frozen}))
    for _ in range(2):
        assert invoke(*RUN).exit_code == 0
    made = sorted(p.name for p in (place / "runs").iterdir())
    assert len(made) == 2 and made[1] == made[0] + "-2", made


def test_files_are_written_0644_and_replaced_only_with_force(place):
    assert invoke("export", "run", "--perfetto", "trace.json", "--force").exit_code == 0
    assert (place / "trace.json").stat().st_mode & 0o777 == 0o644
    assert json.loads((place / "trace.json").read_text())["traceEvents"]
    (place / "trace.json").write_text("{}\n")  # the fixture's check
    result = invoke("export", "run", "--perfetto", "p.json", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["events"] > 0


# --- Ctrl-C in a real process ------------------------------------------------------------


def _stepgap(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "stepgap", *args]
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _interrupt(
    process: subprocess.Popen, after_s: float, marker: str | None = None
) -> tuple[int, str]:
    """SIGINT `after_s` seconds after start (or after stderr showed `marker`)."""
    if marker is not None:
        assert process.stderr is not None
        while marker not in (process.stderr.readline() or marker):
            pass
    time.sleep(after_s)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)
    return process.returncode, err


def _interrupted_cleanly(code: int, err: str) -> None:
    assert code == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted"), err


def test_ctrl_c_while_loading(place):
    code, err = _interrupt(_stepgap(*RUN, "--out", "new", cwd=place), 0.4)
    _interrupted_cleanly(code, err)
    assert len(err.strip().splitlines()) == 1 and not (place / "new").exists()


def test_ctrl_c_while_measuring_saves_what_was_measured(place):
    process = _stepgap("run", "--device", "cpu", "--out", "new", cwd=place)
    code, err = _interrupt(process, 2.5, marker="memory:")
    _interrupted_cleanly(code, err)
    leftovers = [p.name for p in place.iterdir() if p.name.startswith(".")]
    assert not leftovers  # no temporary directory left behind
    if "marked incomplete" in err:  # else Ctrl-C came before the first measured step
        runs = stepgap.load_runs(place / "new")  # whole, readable, and says it is partial
        assert runs and not all(run.complete for run in runs), err


def test_ctrl_c_during_a_forced_rerun_keeps_the_complete_run(place):
    process = _stepgap("run", "--device", "cpu", "--out", "group", "--force", cwd=place)
    code, err = _interrupt(process, 2.5, marker="memory:")
    _interrupted_cleanly(code, err)
    # the fixture checks `group` is byte for byte what it was; the partial run went beside it
    assert all(run.complete for run in stepgap.load_runs(place / "group"))
    beside = place / "group-incomplete"
    if beside.exists():
        assert not all(run.complete for run in stepgap.load_runs(beside))
        shutil.rmtree(beside)


@pytest.mark.parametrize(
    "args",
    [
        ["compare", "broken/binary", "run"],
        ["run", "--device", "cpu", "--model-override", "num_layers=abc"],
        ["run", "--device", "cpu", "--out", ".", "--force"],
        ["report", "broken/binary", "-o", "x.html"],
    ],
)
def test_real_processes_print_one_line(place, corrupt, args):
    corrupt("binary", "steps.csv", BINARY)
    process = _stepgap(*args, cwd=place)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err


@pytest.mark.parametrize("preset", ["glm-4.5-air-tp8", "ernie-4.5-21b-a3b-tp4"])
@pytest.mark.parametrize("out", [str(NOT_WRITABLE), "afile/run", "notes"])
def test_gpu_presets_bad_out_fails_fast_before_torch(place, preset, out):
    """Acceptance 2: a read-only or invalid --out on the GPU presets' workloads fails in
    under 5 s; the path is checked before torch is even imported, let alone a model built."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-X", "importtime", "-m", "stepgap", "run", "--workload", preset]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, "--out", out], cwd=place, env=env, capture_output=True, text=True, timeout=60
    )
    elapsed = time.perf_counter() - started
    errors = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    modules = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert done.returncode == 2 and len(errors) == 1 and errors[0].startswith("error: "), errors
    assert "torch" not in modules and "reference_engine.engine" not in modules
    assert elapsed < 5.0, elapsed
