"""Timestamps as exact integer ns: epoch µs keep their last digit, whatever the path."""

import json

import numpy as np
import pytest

from stepgap.analyze.chrome import read_chrome
from stepgap.analyze.timestamps import scalar_to_ns, text_to_ns

from .conftest import KinetoTrace


def test_texts_become_exact_ns():
    texts = np.array([b"1790857026123456.789", b"12", b"-5", b"0.5", b"1e-05", b"3.1415", b"9.9"])
    assert list(text_to_ns(texts)) == [1790857026123456789, 12000, -5000, 500, 0, 3142, 9900]
    with pytest.raises(ValueError):
        text_to_ns(np.array([b"1.2.3"]))


def test_values_of_every_json_kind_become_exact_ns():
    from decimal import Decimal

    assert scalar_to_ns(Decimal("1790857026123456.789")) == 1790857026123456789
    assert scalar_to_ns(2.5) == 2500 and scalar_to_ns("0.0015") == 2  # half to even
    for bad in (True, "soon", float("nan")):
        with pytest.raises(ValueError):
            scalar_to_ns(bad)


@pytest.mark.parametrize("layout", ["kineto", "minified"])
def test_epoch_microseconds_keep_sub_microsecond_differences(tmp_path, layout):
    """0.25 µs was a float64's resolution at epoch µs; the text has ns."""
    trace = KinetoTrace()
    epoch = 1_790_857_026_123_456.0
    trace.range("ProfilerStep#1", epoch, 10.0)
    trace.launch(epoch + 1, epoch + 2, epoch + 3)
    trace.range("ProfilerStep#2", epoch + 11, 10.0)
    trace.launch(epoch + 12, epoch + 3.8, epoch + 5)
    text = trace.text(layout)  # now fractions no float can hold at this magnitude:
    text = text.replace("1790857026123456.0", "1790857026123456.789")
    text = text.replace("1790857026123467.0", "1790857026123467.001")
    path = tmp_path / "t.json"
    path.write_text(text)
    data = read_chrome(path, 0)
    raw = [e for e in json.loads(text)["traceEvents"] if e.get("ph") == "X"]
    assert data.origin_ns == 1_790_857_026_123_456_789 and len(raw) == 6
    assert sorted(data.ranges.start_us) == [0.0, 10.212]
