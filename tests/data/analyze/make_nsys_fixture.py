"""Write `nsys_two_streams.sqlite`: a small Nsight Systems SQLite export with known steps.

Nsight Systems cannot record on the project's machines, so this file follows the export
schema NVIDIA documents (`nsys export --type sqlite`; tables and columns as in the
"SQLite Export Schema Reference"), with the columns stepgap reads and their neighbours.

One process (pid 4321) on one GPU. Its main thread marks four steps with NVTX push-pop
ranges `stepgap/step` (inline text) around `stepgap/launch` (a registered string, textId),
at host times H = 100, 300, 600, 1000 µs. In each `stepgap/launch` [H, H + 50] it calls:

    H + 1  cudaMemcpyAsync   -> memcpy H2D on stream 7   [H + 10, H + 12]
    H + 3  cudaLaunchKernel  -> kernel_a   on stream 7   [H + 14, H + 40]
    H + 5  cudaLaunchKernel  -> kernel_b   on stream 13  [H + 20, H + 50]
    H + 7  cudaMemcpyAsync   -> memcpy D2H on stream 7   [H + 45, H + 47]
    H + 9  cudaMemsetAsync   -> memset     on stream 13  [H + 52, H + 53]   (third step only)

plus two launches outside the ranges: one before the first range (t = 20 µs, kernel
[25, 30] on stream 7: no step's) and one from another thread during the second step
(t = 320 µs, kernel [341, 343] on stream 7: the second step's, by its time).
Run `python tests/data/analyze/make_nsys_fixture.py`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

OUT = Path(__file__).with_name("nsys_two_streams.sqlite")
PID, MAIN_TID, OTHER_TID = 4321, 4321, 4400
SESSION_START_NS = 1_790_000_000_000_000_000
STEP_HOST_US = (100, 300, 600, 1000)
US = 1000  # the export's unit is ns

SCHEMA = """
CREATE TABLE StringIds (id INTEGER NOT NULL PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE TARGET_INFO_SESSION_START_TIME (utcEpochNs INTEGER, utcTime TEXT, localTime TEXT);
CREATE TABLE TARGET_INFO_GPU (id INTEGER NOT NULL PRIMARY KEY, name TEXT, busLocation TEXT,
    isDiscrete INTEGER, l2CacheSize INTEGER, totalMemory INTEGER, smCount INTEGER);
CREATE TABLE NVTX_EVENTS (start INTEGER NOT NULL, end INTEGER, eventType INTEGER NOT NULL,
    rangeId INTEGER, category INTEGER, color INTEGER, text TEXT, globalTid INTEGER,
    endGlobalTid INTEGER, textId INTEGER REFERENCES StringIds(id), domainId INTEGER,
    uint64Value INTEGER, int64Value INTEGER, doubleValue REAL, uint32Value INTEGER,
    int32Value INTEGER, floatValue REAL, jsonTextId INTEGER, jsonText TEXT);
CREATE TABLE CUPTI_ACTIVITY_KIND_RUNTIME (start INTEGER NOT NULL, end INTEGER NOT NULL,
    eventClass INTEGER NOT NULL, globalTid INTEGER, correlationId INTEGER,
    nameId INTEGER NOT NULL REFERENCES StringIds(id), returnValue INTEGER NOT NULL,
    callchainId INTEGER);
CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start INTEGER NOT NULL, end INTEGER NOT NULL,
    deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL, streamId INTEGER NOT NULL,
    correlationId INTEGER, globalPid INTEGER,
    demangledName INTEGER NOT NULL REFERENCES StringIds(id),
    shortName INTEGER NOT NULL REFERENCES StringIds(id),
    mangledName INTEGER REFERENCES StringIds(id), launchType INTEGER, cacheConfig INTEGER,
    registersPerThread INTEGER NOT NULL, gridX INTEGER NOT NULL, gridY INTEGER NOT NULL,
    gridZ INTEGER NOT NULL, blockX INTEGER NOT NULL, blockY INTEGER NOT NULL,
    blockZ INTEGER NOT NULL, staticSharedMemory INTEGER NOT NULL,
    dynamicSharedMemory INTEGER NOT NULL, localMemoryPerThread INTEGER NOT NULL,
    localMemoryTotal INTEGER NOT NULL, gridId INTEGER NOT NULL,
    sharedMemoryExecuted INTEGER, graphNodeId INTEGER, sharedMemoryLimitConfig INTEGER);
CREATE TABLE CUPTI_ACTIVITY_KIND_MEMCPY (start INTEGER NOT NULL, end INTEGER NOT NULL,
    deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL, streamId INTEGER NOT NULL,
    correlationId INTEGER, globalPid INTEGER, bytes INTEGER NOT NULL,
    copyKind INTEGER NOT NULL, deprecatedSrcId INTEGER, srcKind INTEGER, dstKind INTEGER,
    srcDeviceId INTEGER, srcContextId INTEGER, dstDeviceId INTEGER, dstContextId INTEGER,
    migrationCause INTEGER, graphNodeId INTEGER, virtualAddress INTEGER);
CREATE TABLE CUPTI_ACTIVITY_KIND_MEMSET (start INTEGER NOT NULL, end INTEGER NOT NULL,
    deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL, streamId INTEGER NOT NULL,
    correlationId INTEGER, globalPid INTEGER, value INTEGER NOT NULL, bytes INTEGER NOT NULL,
    graphNodeId INTEGER, memKind INTEGER);
"""
STRINGS = {
    1: "stepgap/launch",
    2: "cudaLaunchKernel_v7000",
    3: "cudaMemcpyAsync_v3020",
    4: "cudaMemsetAsync_v3020",
    5: "kernel_a",
    6: "kernel_b",
    7: "warmup_kernel",
}
NVTX_DOMAIN_CREATE, NVTX_PUSH_POP = 75, 59
H2D, D2H = 1, 2  # CUPTI_ACTIVITY_MEMCPY_KIND


def global_tid(pid: int, tid: int) -> int:
    return pid * 0x1000000 + tid


def global_pid(pid: int) -> int:
    return pid * 0x1000000


class Export:
    """Rows for the export, with a running correlation id as CUPTI hands them out."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.correlation = 0

    def call(self, name_id: int, at_us: float, tid: int = MAIN_TID) -> int:
        self.correlation += 1
        self.db.execute(
            "INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME VALUES (?, ?, 1, ?, ?, ?, 0, NULL)",
            (
                int(at_us * US),
                int((at_us + 0.8) * US),
                global_tid(PID, tid),
                self.correlation,
                name_id,
            ),
        )
        return self.correlation

    def kernel(
        self,
        name_id: int,
        at_us: float,
        start_us: float,
        end_us: float,
        stream: int,
        tid: int = MAIN_TID,
    ) -> None:
        correlation = self.call(2, at_us, tid)
        self.db.execute(
            "INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL VALUES (?, ?, 0, 1, ?, ?, ?, ?, ?, NULL, 0, "
            "0, 32, 128, 1, 1, 128, 1, 1, 0, 0, 0, 0, ?, 0, NULL, NULL)",
            (
                int(start_us * US),
                int(end_us * US),
                stream,
                correlation,
                global_pid(PID),
                name_id,
                name_id,
                correlation,
            ),
        )

    def memcpy(self, kind: int, at_us: float, start_us: float, end_us: float, stream: int):
        correlation = self.call(3, at_us)
        self.db.execute(
            "INSERT INTO CUPTI_ACTIVITY_KIND_MEMCPY VALUES (?, ?, 0, 1, ?, ?, ?, 4096, ?, NULL, "
            "1, 2, 0, 1, 0, 1, 0, NULL, NULL)",
            (int(start_us * US), int(end_us * US), stream, correlation, global_pid(PID), kind),
        )

    def memset(self, at_us: float, start_us: float, end_us: float, stream: int) -> None:
        correlation = self.call(4, at_us)
        self.db.execute(
            "INSERT INTO CUPTI_ACTIVITY_KIND_MEMSET VALUES (?, ?, 0, 1, ?, ?, ?, 0, 4096, NULL, 1)",
            (int(start_us * US), int(end_us * US), stream, correlation, global_pid(PID)),
        )

    def nvtx(self, start_us: float, end_us: float, text: str | None, text_id: int | None):
        self.db.execute(
            "INSERT INTO NVTX_EVENTS (start, end, eventType, text, globalTid, textId, domainId) "
            "VALUES (?, ?, ?, ?, ?, ?, 1)",
            (
                int(start_us * US),
                int(end_us * US),
                NVTX_PUSH_POP,
                text,
                global_tid(PID, MAIN_TID),
                text_id,
            ),
        )


def build(path: Path = OUT) -> Path:
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.executemany("INSERT INTO StringIds VALUES (?, ?)", STRINGS.items())
    db.execute("INSERT INTO TARGET_INFO_SESSION_START_TIME VALUES (?, '', '')", (SESSION_START_NS,))
    db.execute(
        "INSERT INTO TARGET_INFO_GPU VALUES (0, 'NVIDIA H100 80GB HBM3', '0000:00:01.0', "
        "1, 52428800, 85520809984, 132)"
    )
    db.execute(
        "INSERT INTO NVTX_EVENTS (start, end, eventType, text, globalTid, domainId) "
        "VALUES (0, NULL, ?, 'stepgap', ?, 1)",
        (NVTX_DOMAIN_CREATE, global_tid(PID, MAIN_TID)),
    )
    export = Export(db)
    export.kernel(7, 20, 25, 30, stream=7)  # before any step
    for index, h in enumerate(STEP_HOST_US):
        export.nvtx(h - 5, h + 70, "stepgap/step", None)
        export.nvtx(h, h + 50, None, 1)
        export.memcpy(H2D, h + 1, h + 10, h + 12, stream=7)
        export.kernel(5, h + 3, h + 14, h + 40, stream=7)
        export.kernel(6, h + 5, h + 20, h + 50, stream=13)
        export.memcpy(D2H, h + 7, h + 45, h + 47, stream=7)
        if index == 2:
            export.memset(h + 9, h + 52, h + 53, stream=13)
        if index == 1:  # another thread launches during this step: not the step's work
            export.kernel(7, h + 20, h + 41, h + 43, stream=7, tid=OTHER_TID)
    db.commit()
    db.close()
    return path


if __name__ == "__main__":
    print(f"wrote {build()}")
