"""Host calls that block until the device catches up: the waits that open a step gap.

`.item()`, `.tolist()` and `.cpu()` of a device tensor end in one of these: an explicit
synchronisation, a synchronous copy, or an asynchronous device-to-host copy into pageable
memory, which CUDA performs synchronously. A call is found by its name (versioned driver
names like `cuStreamSynchronize_v2` included) and, for the asynchronous copies, by the copy
its correlation id names.
"""

from __future__ import annotations

import enum
import re

import numpy as np
import pandas as pd


class Blocking(enum.StrEnum):
    """Why a call blocks the host."""

    STREAM_SYNC = "stream synchronize"
    EVENT_SYNC = "event synchronize"
    DEVICE_SYNC = "device synchronize"
    SYNC_COPY = "synchronous copy"
    PAGEABLE_COPY = "copy to pageable memory"


BY_NAME = {
    "cudaStreamSynchronize": Blocking.STREAM_SYNC,
    "cuStreamSynchronize": Blocking.STREAM_SYNC,
    "cudaEventSynchronize": Blocking.EVENT_SYNC,
    "cuEventSynchronize": Blocking.EVENT_SYNC,
    "cudaDeviceSynchronize": Blocking.DEVICE_SYNC,
    "cuCtxSynchronize": Blocking.DEVICE_SYNC,
    "cudaMemcpy": Blocking.SYNC_COPY,
    "cudaMemcpy2D": Blocking.SYNC_COPY,
    "cudaMemcpyFromSymbol": Blocking.SYNC_COPY,
    "cuMemcpyDtoH": Blocking.SYNC_COPY,
    "cuMemcpy": Blocking.SYNC_COPY,
}
ASYNC_COPIES = {"cudaMemcpyAsync", "cudaMemcpy2DAsync", "cuMemcpyDtoHAsync", "cuMemcpyAsync"}
PAGEABLE_DTOH = "DtoH pageable"
_VERSION = re.compile(r"_v\d+$")


def blocking_calls(calls: pd.DataFrame, ops: pd.DataFrame) -> pd.DataFrame:
    """The calls that block the host, with `blocking` (a Blocking) and `label` (the call's
    name, and the copy for a copy). Names are classified once per distinct name."""
    names = pd.Series(calls.name.cat.categories, dtype=object).str.replace(_VERSION, "", regex=True)
    codes = calls.name.cat.codes.to_numpy()
    named = names.map(BY_NAME).to_numpy()[codes] if len(names) else np.array([], dtype=object)
    copying = names.isin(ASYNC_COPIES).to_numpy()[codes] if len(names) else named.astype(bool)
    candidates = pd.notna(named) | copying
    chosen = calls[candidates]
    copies = _copy_of(chosen, ops)
    kinds = pd.Series(named[candidates], index=chosen.index, dtype=object)
    kinds = kinds.where(~(copying[candidates] & (copies == PAGEABLE_DTOH)), Blocking.PAGEABLE_COPY)
    found = kinds.notna().to_numpy()
    plain = names.to_numpy(dtype=object)[codes[candidates]]
    label = np.where(copies != "", plain + " (" + copies + ")", plain)
    return chosen[found].assign(blocking=kinds[found], label=label[found])


def _copy_of(calls: pd.DataFrame, ops: pd.DataFrame) -> np.ndarray:
    """The copy detail ("DtoH pageable") of the op each call launched, "" if none."""
    copies = ops[(ops.kind.to_numpy() == "memcpy") & (ops.correlation.to_numpy() > 0)]
    detail = copies.drop_duplicates("correlation").set_index("correlation")["copy"].astype(str)
    found = calls.correlation.map(detail)
    return found.astype(object).where(found.notna(), "").to_numpy(dtype=object)
