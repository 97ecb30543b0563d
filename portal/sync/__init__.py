"""The sync engine: fetch everything from one environment source, then write it in short
transactions (`store`). Runs are rows in `sync_runs` (`runs`); a partial unique index allows
one queued-or-running run per source, so "sync now" pressed in several workers at once, or
racing the schedule, gives one run. Runs are executed only by the scheduler's process, which
claims each with a conditional UPDATE; runs whose process died are failed as interrupted
(`recovery`).
"""

from __future__ import annotations

from .recovery import fail_interrupted_runs, fail_own_runs, fail_stale_runs
from .runs import (
    ANALYZE_AFTER_NEW,
    HEARTBEAT_SECONDS,
    RECORD_FAILURE_SECONDS,
    STALE_SECONDS,
    execute_run,
    owner_id,
    process_queue,
    record_request,
    request_sync,
    run_dict,
)
from .store import Counts, apply_fetch

__all__ = [
    "ANALYZE_AFTER_NEW",
    "HEARTBEAT_SECONDS",
    "RECORD_FAILURE_SECONDS",
    "STALE_SECONDS",
    "Counts",
    "apply_fetch",
    "execute_run",
    "fail_interrupted_runs",
    "fail_own_runs",
    "fail_stale_runs",
    "owner_id",
    "process_queue",
    "record_request",
    "request_sync",
    "run_dict",
]
