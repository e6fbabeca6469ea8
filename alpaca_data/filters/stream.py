"""A filter pipeline over a stored revision as a stream of record batches, on every core.

Each batch goes to a worker thread (`parallel.OrderedPool`) that runs the pipeline's leading stateless steps
(the heuristic rules: a verdict depends on the record alone), prepares what the stateful steps can compute per
record (exact dedup's keys), and encodes the survivors for the new revision (`store.encode`): mostly Arrow and
numba work, outside the GIL. The main thread takes the batches back in order and runs the stateful steps (dedup,
ROUGE-L novelty: greedy, in record order) on them, then writes the kept rows and the rejection rows as it goes.
Memory holds a few batches and the stateful steps' own state, whatever the size of the revision; with one
worker the same functions run in the main thread.
"""
from __future__ import annotations

import collections
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alpaca_data.filters.exact import ExactDuplicates
from alpaca_data.filters.report import REJECTION_SCHEMA, rejections_of, rejections_of_rows
from alpaca_data.filters.steps import Step, StepStats, Verdict, _summed
from alpaca_data.store.encode import EncodedRows, FieldHashes, encode_table, record_keys
from alpaca_data.store.tables import records_to_table, table_to_records

# Records per batch, at most: the writer's row group, as a job reads its whole row group. A bigger row group (a
# pulled revision's) is cut into equal parts, not into full batches and a small rest.
BATCH_ROWS = 32 * 1024


@dataclass(frozen=True)
class BatchJob:
    path: str  # the revision's verified data file: the worker reads its batch itself
    row_group: int
    start: int  # the batch is rows [start, start + rows) of the row group
    rows: int
    offset: int  # position of the batch's first record in the revision
    stateless: tuple[Step, ...]  # run here, in order
    key_fields: tuple[str, ...] | None  # the fields of an exact dedup that comes first among the stateful steps


@dataclass
class PreparedBatch:
    rows: int  # records in the batch as read
    table: pa.Table  # the survivors of the stateless steps (normalised), in order
    positions: np.ndarray  # their positions in the revision
    encoded: EncodedRows
    rejections: pa.Table  # REJECTION_SCHEMA, by index
    stats: list[StepStats]
    keys: np.ndarray | None = None  # uint64 exact-dedup keys of the survivors (`BatchJob.key_fields`)


def prepare_batch(job: BatchJob) -> PreparedBatch:
    """Stateless steps, dedup keys and encoding for one batch (in a worker)."""
    table = pq.ParquetFile(job.path).read_row_group(job.row_group).slice(job.start, job.rows)
    positions = np.arange(job.offset, job.offset + job.rows, dtype=np.int64)
    rejections: list[pa.Table] = []
    stats = [StepStats(step.name) for step in job.stateless]
    for step, step_stats in zip(job.stateless, stats):
        started = time.perf_counter()
        exact: dict[str, np.ndarray] = {}
        if hasattr(step, "check_rows"):  # each row meets only the rules that could act on it, and only those
            verdicts, originals, exact = step.check_rows(table)  # rows are read into Python
        else:
            originals = dict(enumerate(table_to_records(table)))
            verdicts = dict(enumerate(step.check_all(list(originals.values()), progress=False)))
        step_stats.seconds += time.perf_counter() - started
        table, positions = _apply(verdicts, originals, table, positions, step_stats, rejections, exact)
    hashes = FieldHashes(table)  # the instruction's serve the statistics and the dedup keys
    keys = None if job.key_fields is None else ExactDuplicates.keys_for_table(table, job.key_fields, hashes)
    return PreparedBatch(job.rows, table, positions, encode_table(table, hashes), _by_index(rejections), stats,
                         keys)


def _by_index(parts: list[pa.Table]) -> pa.Table:
    """Rejection tables as one, in record order."""
    if not parts:
        return REJECTION_SCHEMA.empty_table()
    table = parts[0] if len(parts) == 1 else pa.concat_tables(parts).sort_by("index")
    return table.combine_chunks()


def _apply(verdicts: dict[int, Verdict], originals: dict[int, dict[str, Any]], table: pa.Table,
           positions: np.ndarray, stats: StepStats, rejections: list[pa.Table],
           exact: dict[str, np.ndarray] | None = None) -> tuple[pa.Table, np.ndarray]:
    """The rows a step kept (rows without a verdict: as they are; a changed record: its new values), in order;
    its drops are added to `rejections`. exact: rows dropped as they are, by reason, read from the table."""
    exact = exact or {}
    untouched = table.num_rows - len(verdicts) - sum(len(rows) for rows in exact.values())
    stats.seen += untouched
    stats.kept += untouched
    keep = np.ones(table.num_rows, dtype=bool)
    for reason, rows in exact.items():
        stats.seen += len(rows)
        stats.dropped[reason] += len(rows)
        keep[rows] = False
        dropped_rows = table.take(pa.array(rows, pa.int64()))
        texts = [dropped_rows.column(name) if name in dropped_rows.column_names else [None] * len(rows)
                 for name in ("instruction", "input")]
        rejections.append(rejections_of_rows(reason, dropped_rows, positions[rows], record_keys(*texts)))
    changed: dict[int, dict[str, Any]] = {}
    dropped: list[tuple[int, Verdict]] = []
    for row, verdict in verdicts.items():
        stats.add(verdict)
        if not verdict.kept:
            keep[row] = False
            dropped.append((row, verdict))
        elif verdict.record != originals[row]:
            changed[row] = verdict.record
    if dropped:
        records = [verdict.record for _, verdict in dropped]
        rejections.append(rejections_of(
            [verdict.reason for _, verdict in dropped], records, positions[[row for row, _ in dropped]],
            keys=record_keys([r.get("instruction") for r in records], [r.get("input") for r in records]),
            scores=[verdict.score for _, verdict in dropped],
            most_similar=[verdict.most_similar for _, verdict in dropped]))
    if changed:  # the changed rows' new values, appended, then each kept row taken from where it now is
        rows = np.arange(table.num_rows)
        rows[list(changed)] = table.num_rows + np.arange(len(changed))
        table = pa.concat_tables([table, records_to_table(list(changed.values()), table.schema)]).take(rows[keep])
    elif not keep.all():
        table = table.filter(pa.array(keep))
    return table, positions[keep]


class SourceInstructions:
    """Instructions of a revision's data file by position, read a row group's instruction column at a time
    (the last few cached: the duplicates of a batch mostly point at nearby records)."""

    def __init__(self, path: str, cached_groups: int = 4):
        self._file = pq.ParquetFile(path)
        starts = [0]
        for group in range(self._file.metadata.num_row_groups):
            starts.append(starts[-1] + self._file.metadata.row_group(group).num_rows)
        self._starts = np.asarray(starts, dtype=np.int64)
        self._cache: collections.OrderedDict[int, pa.ChunkedArray] = collections.OrderedDict()
        self._cached_groups = cached_groups

    def _group(self, group: int) -> pa.ChunkedArray:
        column = self._cache.pop(group, None)
        if column is None:
            column = self._file.read_row_group(group, columns=["instruction"]).column(0)
        self._cache[group] = column
        while len(self._cache) > self._cached_groups:
            self._cache.popitem(last=False)
        return column

    def at(self, positions: list[int]) -> list[str]:
        groups = np.searchsorted(self._starts, positions, side="right") - 1
        return [self._group(int(g))[int(p - self._starts[g])].as_py() for g, p in zip(groups, positions)]


def split_steps(steps: Sequence[Step]) -> tuple[list[Step], list[Step]]:
    """(leading stateless steps, the rest from the first stateful one on)."""
    count = 0
    while count < len(steps) and steps[count].stateless:
        count += 1
    return list(steps[:count]), list(steps[count:])


@dataclass
class StreamResult:
    input_records: int = 0
    kept: int = 0
    dropped: int = 0


class StreamedPipeline:
    """Runs `steps` over batches: `jobs` for the workers (`prepare_batch`), then `take` on each prepared batch
    in order gives what to write (kept table, its encoding, rejection rows)."""

    def __init__(self, steps: Sequence[Step]):
        self.steps = list(steps)
        self.stateless, self.stateful = split_steps(self.steps)
        self.stats = [StepStats(step.name) for step in self.steps]
        self.result = StreamResult()
        # an exact dedup that comes first among the stateful steps gets its keys from the workers
        self._key_fields = self.stateful[0].fields if self.stateful and isinstance(self.stateful[0], ExactDuplicates) \
            else None

    def jobs(self, path: str, batch_rows: int) -> Iterator[BatchJob]:
        """Batches of at most `batch_rows` records that never straddle a row group, in order."""
        metadata = pq.ParquetFile(path).metadata
        if self._key_fields is not None:  # the exact dedup looks kept instructions up in the source, not in memory
            self.stateful[0].instructions_at = SourceInstructions(path).at
        offset = 0
        for group in range(metadata.num_row_groups):
            size = metadata.row_group(group).num_rows
            part = -(-size // max(1, -(-size // batch_rows)))  # ceil(size / parts)
            for start in range(0, size, part):
                rows = min(part, size - start)
                yield BatchJob(path, group, start, rows, offset, tuple(self.stateless), self._key_fields)
                offset += rows

    def take(self, prepared: PreparedBatch) -> tuple[pa.Table, EncodedRows, pa.Table]:
        """The stateful steps over one prepared batch, in order: what to write."""
        self.result.input_records += prepared.rows
        for total, part in zip(self.stats, prepared.stats):
            _merge_stats(total, part)
        rejections = [prepared.rejections]
        table, encoded, positions = prepared.table, prepared.encoded, prepared.positions
        for index, (step, stats) in enumerate(zip(self.stateful, self.stats[len(self.stateless):])):
            if not table.num_rows:
                break
            started = time.perf_counter()
            if index == 0 and prepared.keys is not None:
                keep, drops = step.decide_keys(prepared.keys, table.column("instruction"), positions)
            else:
                verdicts = step.check_all(table_to_records(table), progress=False)
                keep = np.fromiter((v.kept for v in verdicts), dtype=bool, count=len(verdicts))
                drops = {i: v for i, v in enumerate(verdicts) if not v.kept}
            stats.seconds += time.perf_counter() - started
            stats.seen += table.num_rows
            stats.kept += int(keep.sum())
            if drops:
                rows = sorted(drops)
                verdicts = [drops[i] for i in rows]
                for verdict in verdicts:
                    stats.dropped[verdict.reason] += 1
                rejections.append(rejections_of(
                    [v.reason for v in verdicts], table.take(pa.array(rows, type=pa.int64())).to_pylist(),
                    positions[rows], scores=[v.score for v in verdicts],
                    most_similar=[v.most_similar for v in verdicts]))
            if not keep.all():
                table, encoded, positions = table.filter(pa.array(keep)), encoded.select(keep), positions[keep]
        rejected = _by_index(rejections)
        self.result.kept += table.num_rows
        self.result.dropped += rejected.num_rows
        return table, encoded, rejected

    @property
    def counts(self) -> dict[str, int]:
        return _summed(stats.dropped for stats in self.stats)

    @property
    def normalised(self) -> dict[str, int]:
        return _summed(stats.normalised for stats in self.stats)

    def summary(self) -> dict[str, Any]:
        return {"steps": [stats.as_dict() for stats in self.stats]}


def _merge_stats(total: StepStats, part: StepStats) -> None:
    total.seen += part.seen
    total.kept += part.kept
    total.dropped.update(part.dropped)
    total.normalised.update(part.normalised)
    total.seconds += part.seconds
