"""Trace timestamps as exact integer nanoseconds, whatever their epoch.

Chrome traces write µs as decimal text ("1790857026123456.789"). A float64 holds 15-16
significant digits: an epoch-µs timestamp parsed as a float is resolved to 0.25 µs, so a
0.8 µs gap can come out 30 % off. Here the text itself is read: integer and fraction digits
become int64 ns exactly (the fraction rounded half-even where it has more than three
digits). Times are turned into float µs only after the file's own origin is subtracted,
where a float holds every ns exactly for months.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

import numpy as np

NS_PER_US = 1000
MAX_FAST_DIGITS = 16  # integer digits the vectorised path takes (< 2**63 ns after * 1000)
_ZERO, _NINE, _DOT, _MINUS = ord("0"), ord("9"), ord("."), ord("-")
NS = Decimal(NS_PER_US)
INT64_MAX = 2**63 - 1


def text_to_ns(texts: np.ndarray) -> np.ndarray:
    """Decimal µs texts (a bytes array, as a regex finds them) as int64 ns.

    Plain decimals with at most three fraction digits are converted digit by digit, all at
    once; any other text (exponent, more digits) goes through `Decimal`. ValueError when a
    text is not a number or its time does not fit int64 ns."""
    if not len(texts):
        return np.zeros(0, dtype=np.int64)
    width = texts.dtype.itemsize
    chars = np.frombuffer(np.ascontiguousarray(texts).tobytes(), np.uint8).reshape(-1, width)
    fast, ns = _digits_to_ns(chars)
    for i in np.flatnonzero(~fast):
        ns[i] = scalar_to_ns(texts[i].decode("ascii", "replace"))
    return ns


def _digits_to_ns(chars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(which rows are plain decimals, their ns); other rows' ns are left 0.

    One pass per character column (a timestamp is ~20 characters): digits accumulate into
    an integer, those after the dot are counted, anything else marks the row for Decimal."""
    rows = len(chars)
    negative = chars[:, 0] == _MINUS
    value = np.zeros(rows, dtype=np.int64)
    digits = np.zeros(rows, dtype=np.int64)
    fraction = np.zeros(rows, dtype=np.int64)
    dots = np.zeros(rows, dtype=np.int64)
    odd = np.zeros(rows, dtype=bool)
    for j in range(chars.shape[1]):
        column = chars[:, j]
        digit = (column >= _ZERO) & (column <= _NINE)
        value = np.where(digit, value * 10 + (column.astype(np.int64) - _ZERO), value)
        digits += digit
        fraction += digit & (dots > 0)
        dots += column == _DOT
        odd |= ~digit & (column != _DOT) & (column != 0) & ~((j == 0) & negative)
    fast = ~odd & (dots <= 1) & (digits > 0) & (fraction <= 3)
    fast &= digits - fraction <= MAX_FAST_DIGITS
    ns = np.where(fast, value * 10 ** (3 - np.clip(fraction, 0, 3)), 0)
    return fast, np.where(negative, -ns, ns)


def scalar_to_ns(value: Any) -> int:
    """One timestamp or duration in µs (int, float, Decimal or text) as exact int ns.

    A float is taken as the decimal it prints as (what the file said, for any float a JSON
    writer printed). ValueError for anything that is not a finite number in range."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a time")
    if isinstance(value, int):
        ns = value * NS_PER_US
    else:
        try:
            number = Decimal(repr(value) if isinstance(value, float) else str(value))
        except (InvalidOperation, ValueError):
            raise ValueError(f"not a number: {value!r}") from None
        if not number.is_finite():
            raise ValueError("not a finite time")
        ns = int((number * NS).to_integral_value(rounding=ROUND_HALF_EVEN))
    if abs(ns) > INT64_MAX:
        raise ValueError("time out of range")
    return ns


def values_to_ns(values: list) -> np.ndarray:
    """Decoded JSON values (ints, or Decimals from `parse_float=Decimal`) as int64 ns."""
    if all(type(v) is int for v in values):
        array = np.array(values, dtype=object)
        if len(array) and max(abs(int(v)) for v in values) > INT64_MAX // NS_PER_US:
            raise ValueError("time out of range")
        return np.asarray(array * NS_PER_US, dtype=np.int64)
    return np.fromiter((scalar_to_ns(v) for v in values), np.int64, len(values))


def ns_to_us(ns: np.ndarray, origin_ns: int) -> np.ndarray:
    """int64 ns as float µs from `origin_ns`: exact to the ns for spans of months."""
    return (np.asarray(ns, dtype=np.int64) - np.int64(origin_ns)) / NS_PER_US
