"""Compiled loops (numba) of post-processing: foreground and seed runs, seeded watershed
flooding, scores and renumbering, and outline tracing.

Each kernel is a plain loop over arrays, compiled once per process (and cached on disk where the
package directory is writable); the callers in postprocess.py, geometry.py and analyze.py prepare
their inputs with numpy. A pixel loop runs in a function of its own, apart from any buffer that is
grown (replaced) while it runs: numba then keeps the loop tight, where such a buffer in the same
function slowed the loop about tenfold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

# --- foreground and seed runs ----------------------------------------------------------------------


@numba.njit(cache=True, inline="always")
def _root(parent: np.ndarray, item: int) -> int:
    """The root of `item`'s set (path halving)."""
    while parent[item] != item:
        parent[item] = parent[parent[item]]
        item = parent[item]
    return item


@numba.njit(cache=True, inline="always")
def _join(parent: np.ndarray, a: int, b: int) -> None:
    """Merge the sets of a and b under the smaller root, so a set's root is its first run."""
    a, b = _root(parent, a), _root(parent, b)
    if a < b:
        parent[b] = a
    elif b < a:
        parent[a] = b


@numba.njit(cache=True, inline="always")
def _join_above(parent: np.ndarray, runs: np.ndarray, run: int, above: int, above_end: int) -> int:
    """Join run `run` with the runs `above`..`above_end` - 1 of the row above that touch it
    (8-connected: column ranges overlapping or one apart); the first of those the next run of its
    row can touch."""
    start, stop = runs[run, 1], runs[run, 2]
    while above < above_end and runs[above, 2] < start:
        above += 1
    other = above
    while other < above_end and runs[other, 1] <= stop:
        _join(parent, run, other)
        other += 1
    return above


@numba.njit(cache=True, inline="always")
def _numbered(parent: np.ndarray, count: int) -> tuple[np.ndarray, int]:
    """Each run's set numbered 1.. in the order of the sets' first runs; how many sets."""
    numbers = np.empty(count, dtype=np.int64)
    sets = 0
    for run in range(count):
        root = _root(parent, run)
        if root == run:
            sets += 1
            numbers[run] = sets
        else:
            numbers[run] = numbers[root]
    return numbers, sets


@numba.njit(cache=True)
def foreground_runs(  # long: one compiled pass (numba), its state kept in locals for speed
    background: np.ndarray, relief: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray, np.ndarray, int]:
    """The 8-connected components of the foreground (`background < 0.5`) and of the cores
    (foreground where `relief > level`) of H x W maps, as runs of pixels along rows, in one pass.

    Returns (runs int64 [R, 3]: row, first column, column after the last, in raster order;
    run_component int64 [R], the component 1..C of each run; C; cores int64 [Q, 3] the core runs
    likewise; core_seed int64 [Q], the core 1..S of each; core_run int64 [Q], the foreground run
    holding each; S). Components and cores are numbered in the raster order of their first pixel,
    as `scipy.ndimage.label` numbers them.
    """
    height, width = background.shape
    # One row's runs: (first column, column after the last) and, for a core run, its run's index.
    row_runs = np.empty((width // 2 + 1, 2), dtype=np.int64)
    row_cores = np.empty((width // 2 + 1, 3), dtype=np.int64)
    runs = np.empty((max(16, height), 3), dtype=np.int64)
    cores = np.empty((max(16, height), 3), dtype=np.int64)
    parent = np.empty(runs.shape[0], dtype=np.int64)
    core_parent = np.empty(cores.shape[0], dtype=np.int64)
    core_run = np.empty(cores.shape[0], dtype=np.int64)
    count = core_count = 0
    above = above_end = core_above = core_above_end = 0
    for row in range(height):
        found, found_cores = _scan_row(background[row], relief[row], level, row_runs, row_cores)
        while count + found > runs.shape[0]:
            runs, parent = _grown_rows(runs), _grown(parent)
        while core_count + found_cores > cores.shape[0]:
            cores, core_parent, core_run = _grown_rows(cores), _grown(core_parent), _grown(core_run)
        for i in range(found):
            run = count + i
            runs[run, 0], runs[run, 1], runs[run, 2] = row, row_runs[i, 0], row_runs[i, 1]
            parent[run] = run
            above = _join_above(parent, runs, run, above, above_end)
        for i in range(found_cores):
            core = core_count + i
            cores[core, 0], cores[core, 1], cores[core, 2] = row, row_cores[i, 0], row_cores[i, 1]
            core_parent[core], core_run[core] = core, count + row_cores[i, 2]
            core_above = _join_above(core_parent, cores, core, core_above, core_above_end)
        above, above_end = count, count + found
        core_above, core_above_end = core_count, core_count + found_cores
        count += found
        core_count += found_cores
    run_component, components = _numbered(parent, count)
    core_seed, seeds = _numbered(core_parent, core_count)
    return (
        runs[:count],
        run_component,
        components,
        cores[:core_count],
        core_seed,
        core_run[:core_count],
        seeds,
    )


@numba.njit(cache=True)
def _scan_row(
    background: np.ndarray, relief: np.ndarray, level: float, row_runs: np.ndarray, row_cores: np.ndarray
) -> tuple[int, int]:
    """The foreground runs of one row, and the core runs inside each (with the index of its run
    in the row); how many of each."""
    width = background.size
    found = found_cores = 0
    col = 0
    while col < width:
        if not background[col] < 0.5:
            col += 1
            continue
        start = col
        while col < width and background[col] < 0.5:
            col += 1
        row_runs[found, 0], row_runs[found, 1] = start, col
        inner = start
        while inner < col:
            if not relief[inner] > level:
                inner += 1
                continue
            core_start = inner
            while inner < col and relief[inner] > level:
                inner += 1
            row_cores[found_cores, 0], row_cores[found_cores, 1], row_cores[found_cores, 2] = (
                core_start,
                inner,
                found,
            )
            found_cores += 1
        found += 1
    return found, found_cores


@numba.njit(cache=True)
def paint_runs(labels: np.ndarray, runs: np.ndarray, values: np.ndarray, chosen: np.ndarray) -> None:
    """labels[row, start:stop] = values[i] for each run i (row, start, stop) where chosen[i]."""
    for run in range(runs.shape[0]):
        if chosen[run]:
            labels[runs[run, 0], runs[run, 1] : runs[run, 2]] = values[run]


# --- seeded watershed ----------------------------------------------------------------------------


#: Bit of a float32's sign.
_SIGN = np.uint32(0x80000000)
#: Queue keys of `flood_crowded`: (relief order key << _ITEM_BITS) | item number.
_ITEM_BITS = 31
_ITEM_MASK = (1 << _ITEM_BITS) - 1


@numba.njit(cache=True, inline="always")
def _relief_key(distance_bits: int) -> int:
    """An integer in the order of -distance (the relief) for a float32 distance's bits; 0 and -0
    are one value, as they compare equal."""
    bits = int(distance_bits) ^ 0x80000000
    if bits == 0x80000000:
        bits = 0
    return bits ^ (((bits >> 31) * 0xFFFFFFFF) | 0x80000000)


@numba.njit(cache=True)
def flood_crowded(  # long: one compiled pass (numba): nopython code takes flat arrays, not objects
    labels: np.ndarray,
    runs: np.ndarray,
    run_component: np.ndarray,
    crowded: np.ndarray,
    cores: np.ndarray,
    core_component: np.ndarray,
    core_piece: np.ndarray,
    distance: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded watershed on `-distance`, 8-connected, of every crowded component, writing the pieces
    into int32 H x W `labels`.

    runs, run_component: the foreground runs and their components 1..C (`foreground_runs`);
    crowded: bool [C+1], the components to split; cores: int64 [Q, 3] core runs, raster order;
    core_component, core_piece: int64 [Q], the component of each core run and the number C + s of
    the piece its core s seeds, both 0 for a core too small to seed one; distance: float32 H x W.
    Every pixel of a crowded component receives the number of the piece that reaches it first;
    the other pixels of `labels` are left as they are.

    The order is scikit-image's `watershed(-distance, markers, mask=component, connectivity=2)`:
    items of (value, age) popped lowest first, a neighbour labelled when it is pushed, with the
    value max(its relief, the popped value) and the next age. Those keys are all distinct but for
    the markers' (all of age 0), so any queue that pops in key order gives scikit-image's result,
    except where two markers of different pieces of one component share a value: there
    scikit-image's heap decides. Each component is copied into a canvas of its bounding box with a
    margin of one pixel (its pixels close together, no bounds to check) and flooded there; its
    queue is buckets by value with the current bucket's items in a small binary heap.

    Returns (tied bool [C+1], the crowded components whose order hung on such a tie or on a
    non-finite relief, for the caller to flood again with `flood_like_scikit_image` (those with a
    non-finite relief are left with their component's number, their markers with their piece's);
    boxes int64 [C+1, 4] (top, left, bottom, right) of the crowded components).
    """
    components = crowded.size - 1
    run_order, run_starts, boxes, areas = _group_runs(runs, run_component, crowded)
    core_order, core_starts, _, _ = _group_runs(cores, core_component, crowded)
    largest_area, largest_canvas = 1, 1
    for component in range(1, components + 1):
        height, width = boxes[component, 2] - boxes[component, 0], boxes[component, 3] - boxes[component, 1]
        largest_area = max(largest_area, areas[component])
        largest_canvas = max(largest_canvas, (height + 2) * (width + 2))
    state = np.empty(largest_canvas, dtype=np.int32)
    relief = np.empty(largest_canvas, dtype=np.float32)
    markers = np.empty(largest_area, dtype=np.int64)
    work = np.empty((5, largest_area + 1), dtype=np.int64)
    tied = np.zeros(components + 1, dtype=np.bool_)
    core_seed = core_piece - components
    for component in range(1, components + 1):
        if not crowded[component] or areas[component] == 0:
            continue
        own_runs = run_order[run_starts[component] : run_starts[component + 1]]
        own_cores = core_order[core_starts[component] : core_starts[component + 1]]
        box = boxes[component]
        state[: (box[2] - box[0] + 2) * (box[3] - box[1] + 2)] = -1
        finite, low, high = _runs_to_canvas(state, relief, runs, own_runs, distance, box)
        count = _markers_to_canvas(state, markers, cores, own_cores, core_seed, box)
        if not finite:
            tied[component] = True
            for run in own_runs:
                labels[runs[run, 0], runs[run, 1] : runs[run, 2]] = component
            for core in own_cores:
                labels[cores[core, 0], cores[core, 1] : cores[core, 2]] = core_piece[core]
            continue
        tied[component] = _flood_one(state, relief, box, markers[:count], areas[component], low, high, work)
        _canvas_to_labels(labels, state, runs, own_runs, box, components)
    return tied, boxes


@numba.njit(cache=True)
def _group_runs(
    runs: np.ndarray, run_component: np.ndarray, crowded: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The runs of the crowded components grouped by component, raster order kept (a counting
    sort): (run indices, each component's first in them int64 [C+2], boxes int64 [C+1, 4] (top,
    left, bottom, right), pixels int64 [C+1])."""
    components = crowded.size - 1
    starts = np.zeros(components + 2, dtype=np.int64)
    boxes = np.zeros((components + 1, 4), dtype=np.int64)
    areas = np.zeros(components + 1, dtype=np.int64)
    for run in range(runs.shape[0]):
        component = run_component[run]
        if component == 0 or not crowded[component]:
            continue
        row, start, stop = runs[run, 0], runs[run, 1], runs[run, 2]
        box = boxes[component]
        if starts[component + 1] == 0:
            box[0], box[1], box[2], box[3] = row, start, row + 1, stop
        else:
            box[1] = min(box[1], start)
            box[2] = row + 1
            box[3] = max(box[3], stop)
        starts[component + 1] += 1
        areas[component] += stop - start
    for component in range(1, components + 1):
        starts[component + 1] += starts[component]
    order = np.empty(starts[components + 1], dtype=np.int64)
    filled = starts.copy()
    for run in range(runs.shape[0]):
        component = run_component[run]
        if component == 0 or not crowded[component]:
            continue
        order[filled[component]] = run
        filled[component] += 1
    return order, starts, boxes, areas


@numba.njit(cache=True, inline="always")
def _runs_to_canvas(
    state: np.ndarray,
    relief: np.ndarray,
    runs: np.ndarray,
    own: np.ndarray,
    distance: np.ndarray,
    box: np.ndarray,
) -> tuple[bool, float, float]:
    """Mark a component's runs unflooded (0) on its canvas and copy their distances; (all finite,
    lowest, highest) relief (-distance, as float64) over them."""
    canvas_width = box[3] - box[1] + 2
    finite, low, high = True, np.inf, -np.inf
    for run in own:
        at = (runs[run, 0] - box[0] + 1) * canvas_width + runs[run, 1] - box[1] + 1
        for col in range(runs[run, 1], runs[run, 2]):
            value = distance[runs[run, 0], col]
            state[at], relief[at] = 0, value
            at += 1
            negated = -np.float64(value)
            if not np.isfinite(negated):
                finite = False
            low, high = min(low, negated), max(high, negated)
    return finite, low, high


@numba.njit(cache=True, inline="always")
def _markers_to_canvas(
    state: np.ndarray,
    markers: np.ndarray,
    cores: np.ndarray,
    own: np.ndarray,
    seeds: np.ndarray,
    box: np.ndarray,
) -> int:
    """Put the seed number of a component's usable core runs on its canvas; their canvas indices,
    raster order, into `markers`; how many."""
    canvas_width = box[3] - box[1] + 2
    count = 0
    for core in own:
        at = (cores[core, 0] - box[0] + 1) * canvas_width + cores[core, 1] - box[1] + 1
        for _ in range(cores[core, 1], cores[core, 2]):
            state[at] = seeds[core]
            markers[count] = at
            at += 1
            count += 1
    return count


@numba.njit(cache=True, inline="always")
def _canvas_to_labels(
    labels: np.ndarray, state: np.ndarray, runs: np.ndarray, own: np.ndarray, box: np.ndarray, offset: int
) -> None:
    """labels = offset + the canvas's piece at every pixel of a component's runs."""
    canvas_width = box[3] - box[1] + 2
    for run in own:
        at = (runs[run, 0] - box[0] + 1) * canvas_width + runs[run, 1] - box[1] + 1
        for col in range(runs[run, 1], runs[run, 2]):
            labels[runs[run, 0], col] = offset + state[at]
            at += 1


#: Rows of the int64 workspace of `_flood_one`, one column per pixel of the largest component:
#: bucket heads, the next item on each item's bucket, each item's order key, pixel, and the heap.
_HEAD, _FOLLOWING, _KEYS, _WHERE, _HEAP = 0, 1, 2, 3, 4


@numba.njit(cache=True)
def _flood_one(  # long: a numba kernel: nopython code takes flat arrays and scalars, not objects
    state: np.ndarray,
    relief: np.ndarray,
    box: np.ndarray,
    markers: np.ndarray,
    area: int,
    low: float,
    high: float,
    work: np.ndarray,
) -> bool:
    """Flood one component on its canvas (`state`: -1 outside it, 0 unflooded, s > 0 the markers of
    seed s; `relief`: its distances; `markers`: canvas indices, raster order); whether its order
    hung on a tie between markers of different pieces."""
    canvas_width = box[3] - box[1] + 2
    offsets = np.array(
        [
            -canvas_width,
            -1,
            1,
            canvas_width,
            -canvas_width - 1,
            -canvas_width + 1,
            canvas_width - 1,
            canvas_width + 1,
        ]
    )
    bits = relief.view(np.uint32)
    heap = work[_HEAP]
    # Buckets by value, linearly: a non-decreasing function of the value, as the queue needs.
    buckets = max(area // 2, 1)
    scale = (buckets - 1) / (high - low) if high > low else 0.0
    for bucket in range(buckets):
        work[_HEAD, bucket] = -1
    pushed = _queue_markers(state, relief, bits, offsets, markers, low, scale, work)
    queued_markers = pushed
    tied = False
    # The markers of one value pop one after another (no other item has age 0): the piece of the
    # first one of the current value.
    group_key, group_piece = np.int64(-1), np.int64(-1)
    items = 0
    current = -1
    while True:
        while items == 0:
            current += 1
            if current == buckets:
                return tied
            items = _load_bucket(work, heap, current)
        item = heap[0] & _ITEM_MASK
        items = _heap_pop(heap, items, _smaller_key, 0)
        level, index = work[_KEYS, item], work[_WHERE, item]
        label = state[index]
        if item < queued_markers:
            if level != group_key:
                group_key, group_piece = level, label
            elif label != group_piece:
                tied = True
        for offset in offsets:
            neighbour = index + offset
            if state[neighbour] != 0:
                continue
            state[neighbour] = label
            key = _relief_key(bits[neighbour])
            bucket = current
            if key >= level:
                bucket = int((-np.float64(relief[neighbour]) - low) * scale)
            else:
                key = level
            items = _enqueue(work, heap, items, current, bucket, key, neighbour, pushed)
            pushed += 1


@numba.njit(cache=True, inline="always")
def _queue_markers(  # long: a numba kernel: nopython code takes flat arrays and scalars, not objects
    state: np.ndarray,
    relief: np.ndarray,
    bits: np.ndarray,
    offsets: np.ndarray,
    markers: np.ndarray,
    low: float,
    scale: float,
    work: np.ndarray,
) -> int:
    """Queue, in raster order, the markers with an unflooded neighbour (the others would flood
    nothing); how many."""
    pushed = 0
    for index in markers:
        for offset in offsets:
            if state[index + offset] == 0:
                bucket = int((-np.float64(relief[index]) - low) * scale)
                _enqueue(work, work[_HEAP], 0, -1, bucket, _relief_key(bits[index]), index, pushed)
                pushed += 1
                break
    return pushed


@numba.njit(cache=True, inline="always")
def _enqueue(  # long: a numba kernel: nopython code takes flat arrays and scalars, not objects
    work: np.ndarray, heap: np.ndarray, items: int, current: int, bucket: int, key: int, index: int, item: int
) -> int:
    """Queue item number `item` (pixel `index`, order key `key`): into the heap if its bucket is
    the current one, else onto its bucket; the heap's new size."""
    work[_KEYS, item], work[_WHERE, item] = key, index
    if bucket == current:
        return _heap_push(heap, items, (key << _ITEM_BITS) | item, _smaller_key, 0)
    work[_FOLLOWING, item] = work[_HEAD, bucket]
    work[_HEAD, bucket] = item
    return items


@numba.njit(cache=True, inline="always")
def _load_bucket(work: np.ndarray, heap: np.ndarray, bucket: int) -> int:
    """Move a bucket's items into the (empty) heap; its size."""
    items = 0
    item = work[_HEAD, bucket]
    while item >= 0:
        items = _heap_push(heap, items, (work[_KEYS, item] << _ITEM_BITS) | item, _smaller_key, 0)
        item = work[_FOLLOWING, item]
    return items


# --- one binary heap, two orders ---------------------------------------------------------------
# A heap of int64 items in `heap[:items]`; `before(order, a, b)` says whether item a comes first
# (`order`: what it reads beside the items). Numba compiles each use for its own `before`, a
# jitted function passed as an argument, so the comparison is a direct call it can inline.

#: `before`'s type: (what the order reads, item a, item b) -> whether a comes first.
Order = Callable[[Any, int, int], bool]


@numba.njit(cache=True, inline="always")
def _heap_push(heap: np.ndarray, items: int, item: int, before: Order, order: Any) -> int:
    """Sift `item` up from the end of the heap (the same comparisons as swapping it up); its new size."""
    child = items
    while child > 0:
        parent = (child - 1) // 2
        if not before(order, item, heap[parent]):
            break
        heap[child] = heap[parent]
        child = parent
    heap[child] = item
    return items + 1


@numba.njit(cache=True, inline="always")
def _heap_pop(heap: np.ndarray, items: int, before: Order, order: Any) -> int:
    """Drop the top item: the last one moves to the top and sifts down; the new size."""
    items -= 1
    if items == 0:
        return 0
    moving = heap[items]
    i = 0
    while True:
        left, right = 2 * i + 1, 2 * i + 2
        if left >= items:
            break
        smallest, best = i, moving
        if before(order, heap[left], moving):
            smallest, best = left, heap[left]
        if right < items and before(order, heap[right], best):
            smallest, best = right, heap[right]
        if smallest == i:
            break
        heap[i] = best
        i = smallest
    heap[i] = moving
    return items


@numba.njit(cache=True, inline="always")
def _smaller_key(order: int, a: int, b: int) -> bool:
    """`_flood_one`'s order: the items are their own keys (order key, then item number), smaller first."""
    return a < b


# --- scikit-image's heap, replayed ---------------------------------------------------------------


@numba.njit(cache=True, inline="always")
def _before(order: tuple[np.ndarray, int], a: int, b: int) -> bool:
    """Whether heap item a comes before item b (`order`: the items' values, and how many markers
    there are): lower value first, then lower age.

    Items are numbered in push order: the `markers` first (age 0), then age 2, 3, ...
    """
    values, markers = order
    if values[a] != values[b]:
        return bool(values[a] < values[b])
    return max(a - markers, -1) < max(b - markers, -1)


@numba.njit(cache=True)
def flood_like_scikit_image(relief: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> None:
    """Seeded watershed of a 2-D float32 `relief`, 8-connected, in place on int32 `labels`.

    `labels` holds the markers (nonzero) and receives every `mask` pixel the markers reach;
    `mask` (bool) must be False along the array's border. The same algorithm as scikit-image's
    `watershed(relief, markers, mask=mask, connectivity=2)` on the unpadded arrays, step for step:
    one binary heap of (value, age) items, the markers pushed in raveled order with age 0 and their
    own value, a neighbour labelled when it is pushed, with the value max(its relief, the popped
    item's value) and the next age; so its output is the same label image, ties included. The
    heap holds item numbers (push order), which stand for the age.
    """
    flat_relief = relief.ravel()
    flat_labels = labels.ravel()
    flat_mask = mask.ravel()
    width = relief.shape[1]
    offsets = np.array([-width, -1, 1, width, -width - 1, -width + 1, width - 1, width + 1], dtype=np.int64)
    seeds = np.flatnonzero(flat_labels)
    markers = seeds.size
    capacity = markers + int(np.count_nonzero(flat_mask))
    values = np.empty(capacity, dtype=np.float32)
    pixel = np.empty(capacity, dtype=np.int64)
    heap = np.empty(capacity, dtype=np.int64)
    order = (values, markers)
    items = 0
    pushed = 0
    for index in seeds:
        values[pushed], pixel[pushed] = flat_relief[index], index
        items = _heap_push(heap, items, pushed, _before, order)
        pushed += 1
    while items > 0:
        top = heap[0]
        items = _heap_pop(heap, items, _before, order)
        value, index = values[top], pixel[top]
        label = flat_labels[index]
        for offset in offsets:
            neighbour = index + offset
            if not flat_mask[neighbour] or flat_labels[neighbour] != 0:
                continue
            flat_labels[neighbour] = label
            # As scikit-image writes it (NaN included): at least the popped item's value.
            pushed_value = flat_relief[neighbour]
            if pushed_value < value:
                pushed_value = value
            values[pushed], pixel[pushed] = pushed_value, neighbour
            items = _heap_push(heap, items, pushed, _before, order)
            pushed += 1


# --- label-image measurements --------------------------------------------------------------------


@numba.njit(cache=True)
def label_sums(
    labels: np.ndarray, pixels: np.ndarray, probs: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(area int64 [size], sums float64 [K, size]) over the `pixels` (flat indices) of an int32
    label image: each label's pixel count and its sums of `probs[1..K]` ((K+1) x H x W), added in
    pixel order as float64, as `np.bincount` adds its weights."""
    flat_labels = labels.ravel()
    classes = probs.shape[0] - 1
    flat_probs = probs.reshape(probs.shape[0], -1)
    area = np.zeros(size, dtype=np.int64)
    sums = np.zeros((classes, size), dtype=np.float64)
    for index in pixels:
        label = flat_labels[index]
        area[label] += 1
        for k in range(classes):
            sums[k, label] += np.float64(flat_probs[k + 1, index])
    return area, sums


@numba.njit(cache=True)
def relabel(labels: np.ndarray, pixels: np.ndarray, renumber: np.ndarray) -> None:
    """labels[p] = renumber[labels[p]] at the `pixels` (flat indices), in place."""
    flat_labels = labels.ravel()
    for index in pixels:
        flat_labels[index] = renumber[flat_labels[index]]


@numba.njit(cache=True)
def run_sums(  # long: a numba kernel: nopython code takes flat arrays and scalars, not objects
    labels: np.ndarray,
    runs: np.ndarray,
    run_component: np.ndarray,
    crowded: np.ndarray,
    probs: np.ndarray,
    size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """`label_sums` over the foreground runs: a run of a crowded component takes each pixel's
    label from `labels`, any other run its component's number; pixels added in raster order."""
    classes = probs.shape[0] - 1
    area = np.zeros(size, dtype=np.int64)
    sums = np.zeros((classes, size), dtype=np.float64)
    for run in range(runs.shape[0]):
        row, start, stop = runs[run, 0], runs[run, 1], runs[run, 2]
        component = run_component[run]
        if crowded[component]:
            for col in range(start, stop):
                label = labels[row, col]
                area[label] += 1
                for k in range(classes):
                    sums[k, label] += np.float64(probs[k + 1, row, col])
        else:
            area[component] += stop - start
            for k in range(classes):
                total = sums[k, component]
                for col in range(start, stop):
                    total += np.float64(probs[k + 1, row, col])
                sums[k, component] = total
    return area, sums


@numba.njit(cache=True)
def relabel_runs(
    labels: np.ndarray, runs: np.ndarray, run_component: np.ndarray, crowded: np.ndarray, renumber: np.ndarray
) -> None:
    """Write renumber[label] on every pixel of the runs, a label as `run_sums` reads it."""
    for run in range(runs.shape[0]):
        row, start, stop = runs[run, 0], runs[run, 1], runs[run, 2]
        component = run_component[run]
        if crowded[component]:
            for col in range(start, stop):
                labels[row, col] = renumber[labels[row, col]]
        else:
            labels[row, start:stop] = renumber[component]


@numba.njit(cache=True)
def renumbered(labels: np.ndarray, renumber: np.ndarray) -> np.ndarray:
    """int32 renumber[labels] of an int H x W label image whose background is 0 (renumber[0] = 0
    is taken, not read), row by row."""
    out = np.empty(labels.shape, dtype=np.int32)
    for row in range(labels.shape[0]):
        _renumber_row(labels[row], renumber, out[row])
    return out


@numba.njit(cache=True)
def _renumber_row(labels: np.ndarray, renumber: np.ndarray, out: np.ndarray) -> None:
    for col in range(labels.size):
        label = labels[col]
        out[col] = renumber[label] if label != 0 else 0


# --- outlines ------------------------------------------------------------------------------------

#: Crack sides of a pixel, in the order a clockwise walk (object on the right, rows down) turns
#: right: 0 top (walked east), 1 right (south), 2 bottom (west), 3 left (north); the step of each.
_FORWARD_ROWS = np.array([0, 1, 0, -1], dtype=np.int64)
_FORWARD_COLS = np.array([1, 0, -1, 0], dtype=np.int64)
#: Twice the (x, y) of each side's mid-point, from twice the pixel's (col, row).
_MID_X2 = np.array([1, 2, 1, 0], dtype=np.int64)
_MID_Y2 = np.array([0, 1, 2, 1], dtype=np.int64)


@numba.njit(cache=True, inline="always")
def label_at(labels: np.ndarray, row: int, col: int) -> int:
    """labels[row, col], or 0 (background) outside the image."""
    if 0 <= row < labels.shape[0] and 0 <= col < labels.shape[1]:
        return labels[row, col]
    return 0


@numba.njit(cache=True)
def trace_outlines(  # long: one compiled loop (numba), its state kept in locals for speed
    labels: np.ndarray, targets: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Outer outlines of the `targets` (distinct labels 1..count) of an int32 H x W label image,
    holes filled, in one raster pass over the image.

    For each target, one ring per 4-connected piece: the walk along the cracks between its pixels
    and the rest (object on the right: clockwise on screen), whose vertices are the cracks'
    mid-points where the walk's direction changes, as marching squares draws it through edge
    mid-points with collinear vertices dropped. A walk around a hole (it turns left four times more
    than right) is no outline. Labels that are no target, and values outside 1..count, are ignored.

    Returns (vertices int64 [V, 2], twice each vertex's (x, y); ring_starts int64 [R+1], each
    ring's first vertex; ring_target int64 [R], the index in `targets` of each ring's object, rings
    in the raster order of their first pixel; areas int64 [T], pixels of each target; boxes int64
    [T, 4] (top, left, bottom, right) of each target (zeros without pixels); awkward bool [T], the
    targets with a hole and two or more rings, where a piece may lie in another's hole and filling
    would swallow it: those are for the caller to outline its other way).
    """
    height, width = labels.shape
    index_of = np.full(count + 1, -1, dtype=np.int64)
    for t in range(targets.size):
        index_of[targets[t]] = t
    visited = np.zeros(labels.shape, dtype=np.bool_)
    vertices = np.empty((1024, 2), dtype=np.int64)
    ring_starts = np.zeros(64, dtype=np.int64)
    ring_target = np.zeros(64, dtype=np.int64)
    ring_count = 0
    areas = np.zeros(targets.size, dtype=np.int64)
    boxes = np.zeros((targets.size, 4), dtype=np.int64)
    rings = np.zeros(targets.size, dtype=np.int64)
    holes = np.zeros(targets.size, dtype=np.int64)
    sides = np.empty(1024, dtype=np.int64)
    rows = np.empty(1024, dtype=np.int64)
    cols = np.empty(1024, dtype=np.int64)
    vertex_count = 0
    for row in range(height):
        col = -1
        while True:
            # The scan of the row goes on in its own function: the buffers that grow here would
            # slow its loop down.
            col = _scan_to_walk(labels, visited, index_of, row, col + 1, areas, boxes)
            if col == width:
                break
            label = labels[row, col]
            t = index_of[label]
            walked, turns, sides, rows, cols = _walk(labels, visited, label, row, col, sides, rows, cols)
            if turns < 0:
                holes[t] += 1
                continue
            rings[t] += 1
            vertices, vertex_count = _corners_of_walk(vertices, vertex_count, sides, rows, cols, walked)
            if ring_count + 1 == ring_starts.size:
                ring_starts, ring_target = _grown(ring_starts), _grown(ring_target)
            ring_target[ring_count] = t
            ring_count += 1
            ring_starts[ring_count] = vertex_count
    awkward = np.zeros(targets.size, dtype=np.bool_)
    for t in range(targets.size):
        awkward[t] = holes[t] > 0 and rings[t] > 1
    return (
        vertices[:vertex_count],
        ring_starts[: ring_count + 1],
        ring_target[:ring_count],
        areas,
        boxes,
        awkward,
    )


@numba.njit(cache=True)
def _scan_to_walk(  # long: a numba kernel: nopython code takes flat arrays and scalars, not objects
    labels: np.ndarray,
    visited: np.ndarray,
    index_of: np.ndarray,
    row: int,
    col: int,
    areas: np.ndarray,
    boxes: np.ndarray,
) -> int:
    """Count the target pixels of `row` from `col` on into their areas and boxes, up to the first
    one whose top crack starts a walk (not walked yet, the pixel above not of its label): its
    column (counted), or the width."""
    width = labels.shape[1]
    current = labels[row]
    count = index_of.size - 1
    while col < width:
        label = current[col]
        if label <= 0 or label > count or index_of[label] < 0:
            col += 1
            continue
        t = index_of[label]
        if areas[t] == 0:
            boxes[t, 0], boxes[t, 1], boxes[t, 2], boxes[t, 3] = row, col, row + 1, col + 1
        else:
            boxes[t, 1] = min(boxes[t, 1], col)
            boxes[t, 2] = row + 1
            boxes[t, 3] = max(boxes[t, 3], col + 1)
        areas[t] += 1
        if not visited[row, col] and (row == 0 or labels[row - 1, col] != label):
            return col
        col += 1
    return width


@numba.njit(cache=True)
def _walk(  # long: a numba kernel: nopython code takes flat arrays and scalars, not objects
    labels: np.ndarray,
    visited: np.ndarray,
    label: int,
    row: int,
    col: int,
    sides: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """Walk the cracks of one boundary from the top crack of pixel (row, col), marking each top
    crack walked in `visited`; (cracks walked, right turns minus left turns, and the buffers of
    each crack's side, row and column, grown as needed)."""
    side = 0
    start_row, start_col = row, col
    walked = 0
    turns = 0
    while True:
        if walked == sides.size:
            sides, rows, cols = _grown(sides), _grown(rows), _grown(cols)
        sides[walked], rows[walked], cols[walked] = side, row, col
        walked += 1
        if side == 0:
            visited[row, col] = True
        ahead_row, ahead_col = row + _FORWARD_ROWS[side], col + _FORWARD_COLS[side]
        outward = (side + 3) % 4
        if label_at(labels, ahead_row, ahead_col) != label:
            side = (side + 1) % 4
            turns += 1
        elif (
            label_at(labels, ahead_row + _FORWARD_ROWS[outward], ahead_col + _FORWARD_COLS[outward]) != label
        ):
            row, col = ahead_row, ahead_col
        else:
            row, col = ahead_row + _FORWARD_ROWS[outward], ahead_col + _FORWARD_COLS[outward]
            side = outward
            turns -= 1
        if side == 0 and row == start_row and col == start_col:
            return walked, turns, sides, rows, cols


@numba.njit(cache=True)
def _corners_of_walk(
    vertices: np.ndarray, count: int, sides: np.ndarray, rows: np.ndarray, cols: np.ndarray, walked: int
) -> tuple[np.ndarray, int]:
    """Append the walk's corners (doubled coordinates) to `vertices`; (vertices, new count)."""
    corners = 0
    for i in range(walked):
        if sides[i - 1 if i > 0 else walked - 1] != sides[i + 1 if i + 1 < walked else 0]:
            corners += 1
    while count + walked > vertices.shape[0]:
        vertices = _grown_rows(vertices)
    every = corners < 3
    for i in range(walked):
        if every or sides[i - 1 if i > 0 else walked - 1] != sides[i + 1 if i + 1 < walked else 0]:
            vertices[count, 0] = 2 * cols[i] + _MID_X2[sides[i]]
            vertices[count, 1] = 2 * rows[i] + _MID_Y2[sides[i]]
            count += 1
    return vertices, count


@numba.njit(cache=True)
def _grown(array: np.ndarray) -> np.ndarray:
    """A copy twice as long (the rest uninitialised)."""
    bigger = np.empty(2 * array.size, dtype=array.dtype)
    for i in range(array.size):
        bigger[i] = array[i]
    return bigger


@numba.njit(cache=True)
def _grown_rows(array: np.ndarray) -> np.ndarray:
    """A copy with twice the rows (the rest uninitialised)."""
    bigger = np.empty((2 * array.shape[0], array.shape[1]), dtype=array.dtype)
    for i in range(array.shape[0]):
        for j in range(array.shape[1]):
            bigger[i, j] = array[i, j]
    return bigger
