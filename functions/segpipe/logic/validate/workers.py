"""The annotation scan on several processes, for large files.

Decoding a chunk and working out its rings' geometry is most of a validation's time (about 80 %
at a million polygons), and it is pure Python: one process uses one core. A Lambda function
with more than 1,769 MB has more than one vCPU's worth of time (and shows 3 CPUs from 3,009 MB),
so a large array is cut into runs of consecutive chunks (`ChunkedArray.parts`): forked workers
scan all runs but the first while this process scans the first. A worker sends what it kept
every `MESSAGE_ANNOTATIONS` annotations, as plain tuples (`Partial`), so it never holds much
more than that; between two of its own chunks this process takes in whatever has arrived (still
pickled, compact: a pipe holds only 64 KB, and a full one would stall the worker), and merges it
all once its own run is done. Merged in file order, the result is the one scan would have given
alone: the same records per image in the same order, the same counts and the same first
examples.

Only `multiprocessing`'s fork context and one-way `Pipe`s are used: AWS Lambda has no /dev/shm,
so nothing that needs a semaphore (`Pool`, `Queue`). A process that runs other threads (the
local stack serves its functions from threads) is never forked, since a forked child inherits
only the calling thread and could wait forever on a lock another thread held. A worker that
dies without finishing (out of memory, killed) costs time, not the result: the chunks it did
not send are scanned here.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import threading
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from multiprocessing.connection import Connection

from segpipe.logic.validate.loading import Chunk, ChunkedArray, Refused
from segpipe.logic.validate.scan import Row, Scan, Scope, empty_scan, planned, scan_annotations, scan_chunk
from segpipe.logic.validate.thresholds import EXAMPLES

#: Most processes one scan uses, this one included.
MAX_WORKERS = 4
#: Smallest annotations array scanned on several processes: a fork costs a few milliseconds.
PARALLEL_BYTES = 32 * 1024 * 1024
#: Annotations a worker scans between two messages: a few MB each, and a few hundred in all.
MESSAGE_ANNOTATIONS = 5000


@dataclass(frozen=True)
class Partial:
    """What a worker's scan kept, as it travels back (a `Scan` without its slots)."""

    ids: list[int]
    rows: list[Row]
    areas: dict[int, list[float]]
    image_ids: dict[int, list[int]]
    tiny: Counter[int]
    excluded: Counter[int]
    broken: Counter[str]
    broken_examples: list[int]
    unfinished: int
    chunks: int
    """How many chunks of the run this covers."""

    @classmethod
    def take(cls, scan: Scan, *, chunks: int) -> Partial:
        """What `scan` (a rows scan) kept since the last take; `scan` goes on from nothing."""
        assert scan.rows is not None
        partial = cls(chunks=chunks, **{name: getattr(scan, name) for name in _TAKEN})
        scan.ids, scan.rows, scan.broken_examples, scan.unfinished = [], [], [], 0
        scan.areas = {category: [] for category in scan.areas}
        scan.image_ids = {category: [] for category in scan.image_ids}
        scan.tiny, scan.excluded, scan.broken = Counter(), Counter(), Counter()
        return partial


#: The fields of `Partial` a scan fills, taken from it as they are.
_TAKEN = tuple(field.name for field in fields(Partial) if field.name != "chunks")


def available_workers() -> int:
    """The CPUs this process may run on, at most `MAX_WORKERS`."""
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


def scan_all(annotations: Iterable[Chunk], *, scope: Scope, workers: int | None = None) -> Scan:
    """`scan_annotations` of every chunk, on up to `workers` processes (default: the CPUs there
    are) when the array is large and this process may fork; the same result either way."""
    count = available_workers() if workers is None else workers
    if not (
        isinstance(annotations, ChunkedArray)
        and count > 1
        and annotations.size >= PARALLEL_BYTES
        and _single_threaded()
    ):
        return scan_annotations(annotations, scope=scope)
    first, *rest = annotations.parts(count)
    started = [_Worker(part, scope=scope) for part in rest]
    try:
        scan = empty_scan(scope)
        for chunk in first:
            scan_chunk(chunk, scan=scan, scope=scope)
            for worker in started:  # a worker's pipe holds 64 KB: empty it between chunks
                worker.receive(wait=False)
        for worker in started:
            _merge_from(worker, scan=scan, scope=scope)
    finally:
        for worker in started:
            worker.stop()
    return scan


def _single_threaded() -> bool:
    return threading.active_count() == 1


def _merge_from(worker: _Worker, *, scan: Scan, scope: Scope) -> None:
    """Merge a worker's messages in order; scan here whatever it did not send."""
    merged = 0
    for partial in worker.partials():
        merge(scan, partial)
        merged += partial.chunks
    if not worker.finished:
        for chunk in ChunkedArray(worker.part.raw, worker.part.spans[merged:]):
            scan_chunk(chunk, scan=scan, scope=scope)


def merge(scan: Scan, partial: Partial) -> None:
    """Add a later stretch's scan to `scan`, as if one scan had read both in file order."""
    scan.ids.extend(partial.ids)
    slots = scan.slots
    for row in partial.rows:
        slots[row[1]].annotations.append(planned(row))
    for category, areas in partial.areas.items():
        scan.areas[category].extend(areas)
        scan.image_ids[category].extend(partial.image_ids[category])
    scan.tiny.update(partial.tiny)
    scan.excluded.update(partial.excluded)
    scan.broken.update(partial.broken)
    scan.broken_examples.extend(partial.broken_examples[: EXAMPLES - len(scan.broken_examples)])
    scan.unfinished += partial.unfinished


class _Worker:
    """One forked process scanning one run of chunks, and its messages as received here."""

    def __init__(self, part: ChunkedArray, *, scope: Scope) -> None:
        self.part = part
        self.finished = False
        context = multiprocessing.get_context("fork")
        self._reader, writer = context.Pipe(duplex=False)
        self._process = context.Process(target=_work, args=(part, scope, writer), daemon=True)
        self._process.start()
        writer.close()  # the child holds the only writing end: its exit ends our reading
        self._messages: deque[bytes] = deque()
        self._ended = False

    def receive(self, *, wait: bool) -> None:
        """Keep the messages that have come (still pickled), or wait for the next one."""
        try:
            while not self._ended and (wait or self._reader.poll(0)):
                self._messages.append(self._reader.recv_bytes())
                wait = False
        except (EOFError, OSError):
            self._ended = True

    def partials(self) -> Iterator[Partial]:
        """The worker's messages in order, waiting for those still to come; `finished` tells
        whether it sent them all. Raises `Refused` as its scan did."""
        while self._messages or not self._ended:
            if not self._messages:
                self.receive(wait=True)
                continue
            answer = pickle.loads(self._messages.popleft())  # noqa: S301 (our own fork, a private pipe)
            if isinstance(answer, Partial):
                yield answer
            elif answer == _DONE:
                self.finished = True
            else:
                raise Refused(str(answer))

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        self._reader.close()


#: A worker's last message.
_DONE = "done"


def _work(part: ChunkedArray, scope: Scope, writer: Connection) -> None:
    """A worker's whole life: scan, sending what each chunk kept, then `_DONE`, and exit. The
    collector stays off, so the parent's objects, shared with this process page by page, are not
    copied by a collection touching them all."""
    gc.disable()
    scan, pending = empty_scan(scope, rows=True), 0

    def send(message: Partial | Refused | str) -> None:
        writer.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    try:
        for chunk in part:
            scan_chunk(chunk, scan=scan, scope=scope)
            pending += 1
            if len(scan.ids) >= MESSAGE_ANNOTATIONS:
                send(Partial.take(scan, chunks=pending))
                pending = 0
        send(Partial.take(scan, chunks=pending))
    except Refused as error:
        send(Refused(str(error)))
    else:
        send(_DONE)
    writer.close()
