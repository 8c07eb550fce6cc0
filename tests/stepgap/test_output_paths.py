"""Which directories are stepgap runs (and so may be replaced with --force)."""

from stepgap.output_paths import is_run_directory

RUN = ("run.json", "steps.csv", "requests.csv", "phases.csv", "tokens.jsonl")


def make(directory, names):
    directory.mkdir()
    for name in names:
        (directory / name).write_text("x")
    return directory


def test_a_tensor_parallel_run_with_its_rank_tables_is_a_run(tmp_path):
    tp = (*RUN, "steps-rank1.csv", "phases-rank1.csv", "steps-rank3.csv", "phases-rank3.csv")
    assert is_run_directory(make(tmp_path / "tp2", tp))
    group = tmp_path / "group"
    group.mkdir()
    make(group / "sync", tp)
    make(group / "overlap", tp)
    assert is_run_directory(group)


def test_other_files_beside_a_run_make_it_not_a_run(tmp_path):
    for name, extra in [
        ("notes", "notes.txt"),
        ("rank0", "steps-rank0.csv"),
        ("x", "steps-rank.csv"),
    ]:
        assert not is_run_directory(make(tmp_path / name, (*RUN, extra))), extra
