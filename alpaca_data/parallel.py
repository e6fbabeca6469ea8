"""Work spread over the machine's cores, results in input order.

Data commands cut a big input into chunks (record batches, byte ranges of a JSONL file) and run one pure function
per chunk in workers: processes, or threads for work that runs outside the GIL (Arrow, Parquet, the numba row
kernels: import, filter, dedup); the main thread reads, decides what depends on order, and writes. With one
worker, or an input too small to pay for starting workers, the same function runs in the main thread: the
serial path and the parallel one run the same code, so they give the same revision.

ALPACA_WORKERS=N sets the number of workers (default: the cores this process may use; 1: serial).
ALPACA_PARALLEL_MIN_ROWS sets how many records an input needs before workers start (tests set it low).
"""
from __future__ import annotations

import collections
import ctypes
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, TypeVar

from alpaca_data.errors import UsageError

WORKERS_ENV = "ALPACA_WORKERS"
MIN_ROWS_ENV = "ALPACA_PARALLEL_MIN_ROWS"
DEFAULT_MIN_ROWS = 100_000  # below this a command is done in a few seconds: process start-up would not pay
# The modules whose functions run in workers: imported once by the forkserver, not by every worker.
WORKER_MODULES = ("alpaca_data.import_chunks",)
PARENT_CHECK_S = 0.5  # how soon a worker notices that the command that started it was killed
THREAD_SWITCH_S = 0.0005
IN_FLIGHT_EXTRA = 1  # results queued beyond one per worker: a worker rarely waits on the main process

T = TypeVar("T")
R = TypeVar("R")


def _env_int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"${name}={raw!r}: expected a whole number") from None
    if value < minimum:
        raise UsageError(f"${name}={raw!r}: expected a number >= {minimum}")
    return value


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may run on (a container's share)
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def worker_count() -> int:
    return _env_int(WORKERS_ENV, usable_cores(), 1)


def workers_for(rows: int) -> int:
    """How many workers an input of `rows` records gets (1: do it in this thread)."""
    workers = worker_count()  # a bad setting is refused whatever the size
    return workers if rows >= _env_int(MIN_ROWS_ENV, DEFAULT_MIN_ROWS, 0) else 1


class OrderedPool:
    """`map(fn, chunks)` over worker processes (or in this process with one worker), results in input order.

    Workers are forked from a fresh forkserver process, not from this one: the caller may already run threads
    (Arrow's pools, a progress bar) that a plain fork would copy mid-lock.
    threads: workers are threads of this process instead, for a `fn` that spends its time outside the GIL
    (Parquet, Arrow, the numba row kernels): nothing is pickled and each library is loaded once.
    """

    def __init__(self, workers: int, *, threads: bool = False):
        self.workers = max(1, workers)
        self.threads = threads
        self._executor: ProcessPoolExecutor | ThreadPoolExecutor | None = None

    def __enter__(self) -> OrderedPool:
        if self.workers > 1 and self.threads:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="ordered-pool")
            # A thread back from Arrow or numba waits for the GIL up to the switch interval while another runs
            # Python; at the default 5 ms those waits added a tenth to `filter` at 1M records.
            self._switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(THREAD_SWITCH_S)
        elif self.workers > 1:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(list(WORKER_MODULES))
            self._executor = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_exit_with,
                                                 initargs=(os.getpid(),))
        return self

    def __exit__(self, *_: object) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
            if self.threads:
                sys.setswitchinterval(self._switch_interval)

    def map(self, fn: Callable[[T], R], chunks: Iterable[T]) -> Iterator[R]:
        if self._executor is None:
            for chunk in chunks:
                yield fn(chunk)
            return
        pending: collections.deque[Future] = collections.deque()
        limit = self.workers + IN_FLIGHT_EXTRA
        for chunk in chunks:
            pending.append(self._executor.submit(fn, chunk) if self.threads else
                           self._executor.submit(_call_and_trim, fn, chunk))
            if len(pending) >= limit:
                yield self._next(pending)
        while pending:
            yield self._next(pending)

    def _next(self, pending: collections.deque[Future]) -> Any:
        result = pending.popleft().result()
        if not self.threads:
            trim_heap()  # results arrive as pickles of many sizes: this process keeps their pages otherwise
        return result


def _exit_with(pid: int) -> None:
    """In each worker: exit when the process that started it is gone. A pool's workers otherwise wait forever
    for work after their parent is killed with SIGKILL (nothing is left to tell them to stop)."""
    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK_S)
            try:
                os.kill(pid, 0)
            except (ProcessLookupError, PermissionError):  # gone (its number may now be another user's)
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _call_and_trim(fn: Callable[[T], R], chunk: T) -> R:
    """Run one chunk in a worker, then hand the freed heap back to the system: many short-lived buffers of
    different sizes (orjson's output, Arrow's decode) otherwise leave each worker holding ~100 MB it no longer
    uses (measured: 300 -> 200 MB per filter worker)."""
    result = fn(chunk)
    trim_heap()
    return result


def trim_heap() -> None:
    import pyarrow as pa

    pa.default_memory_pool().release_unused()  # Arrow's own allocator (mimalloc) keeps freed pages too
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc: nothing to do
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None
