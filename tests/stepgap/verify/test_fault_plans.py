import pytest

from reference_engine import ConfigError
from reference_engine.faults import Fault
from stepgap.verify.runner import VerifyConfig, exercising, fault_table


def test_a_chunk_fault_runs_only_on_the_workloads_that_chunk_prompts():
    workloads = ("mixed", "chunked", "single-slot", "wide")
    assert exercising(workloads, Fault.CHUNK_POSITION_OFF_BY_ONE) == ("chunked", "single-slot")
    assert exercising(workloads, Fault.STALE_PINNED_BUFFER) == workloads


def test_a_chunk_fault_without_a_chunked_workload_is_refused_before_any_run():
    config = VerifyConfig(workloads=("mixed",))
    with pytest.raises(ConfigError, match="needs a chunked-prefill workload; choose one of"):
        fault_table(config, [Fault.CHUNK_POSITION_OFF_BY_ONE], verifier=None)


def test_planting_a_chunk_fault_where_it_cannot_show_is_refused_and_cases_skip_whole_prompts():
    with pytest.raises(ConfigError, match="needs a chunked-prefill workload"):
        VerifyConfig(workloads=("mixed",), fault=Fault.CHUNK_POSITION_OFF_BY_ONE)
    config = VerifyConfig(workloads=("mixed", "chunked"), fault=Fault.CHUNK_POSITION_OFF_BY_ONE)
    assert {case.workload for case in config.cases()} == {"chunked"}
