"""The client's own timing, against a stand-in server that stamps each token with its
write time: every token arrives, at the asked pace, and the delays are measured. (The
figures for the README come from `python -m stepgap.bench.calibrate` on a quiet machine;
here the bounds are loose: CI shares its two cores with other suites.)"""

from stepgap.bench.calibrate import run


def test_the_client_keeps_pace_and_its_delay_is_measured():
    low, high = run(rates=(500, 4_000), streams=16, seconds=0.6)
    for point, rate in ((low, 500), (high, 4_000)):
        assert point.tokens >= rate * 0.6 * 0.95
        assert 0.7 * rate < point.achieved_tok_s < 1.3 * rate
        assert 0 < point.delay_p50_us < 50_000 and point.delay_p50_us <= point.delay_p99_us
        assert point.itl_error_p50_us >= 0
