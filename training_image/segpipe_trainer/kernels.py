"""Compiled loops (numba) of post-processing: seeded watershed flooding and outline tracing.

Each kernel is a plain loop over raveled arrays, compiled once per process (and cached on disk
where the package directory is writable); the callers in postprocess.py and geometry.py prepare
their inputs with numpy.
"""

from __future__ import annotations

import numba
import numpy as np

# --- seeded watershed ----------------------------------------------------------------------------


#: Bit of a float32's sign.
_SIGN = np.uint32(0x80000000)
#: Queue keys of `flood_components`: (relief order key << _ITEM_BITS) | item number.
_ITEM_BITS = 31
_ITEM_MASK = (1 << _ITEM_BITS) - 1
#: The 8 neighbours in scikit-image's order (raveled offsets by distance, then by offset), as
#: (row, column) steps.
_STEP_ROWS = np.array([-1, 0, 0, 1, -1, -1, 1, 1], dtype=np.int64)
_STEP_COLS = np.array([0, -1, 1, 0, -1, 1, -1, 1], dtype=np.int64)


@numba.njit(cache=True, inline="always")
def _relief_key(distance_bits: int) -> int:
    """An integer in the order of -distance (the relief) for a float32 distance's bits; 0 and -0
    are one value, as they compare equal."""
    bits = int(distance_bits) ^ 0x80000000
    if bits == 0x80000000:
        bits = 0
    return bits ^ (((bits >> 31) * 0xFFFFFFFF) | 0x80000000)


@numba.njit(cache=True)
def flood_components(  # long: one compiled loop (numba), its state kept in locals for speed
    labels: np.ndarray,
    crowded: np.ndarray,
    seeds: np.ndarray,
    usable: np.ndarray,
    distance: np.ndarray,
    pixels: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded watershed on `-distance`, 8-connected, of every crowded component, in place.

    labels: int32 H x W of components 1..C (C = len(crowded) - 1); crowded: bool [C+1], the
    components to split; seeds: int32 H x W of cores 1..S; usable: bool [S+1], the cores that seed
    a piece; distance: float32 H x W; pixels: flat indices, in raveled order, of every labelled
    pixel. Every pixel of a crowded component receives the number C + s of the piece grown from
    the usable core s that reaches it first.

    The order is scikit-image's `watershed(-distance, markers, mask=component, connectivity=2)`:
    items of (value, age) popped lowest first, a neighbour labelled when it is pushed, with the
    value max(its relief, the popped value) and the next age. Those keys are all distinct but for
    the markers' (all of age 0), so any queue that pops in key order gives scikit-image's result,
    except where two markers of different pieces of one component share a value: there
    scikit-image's heap decides. Components are flooded one after another (their pixels stay in
    cache); each one's queue is buckets by value with the current bucket's items in a small
    binary heap.

    Returns (tied bool [C+1], the crowded components whose order hung on such a tie or on a
    non-finite relief, for the caller to flood again with `flood_like_scikit_image`; boxes int64
    [C+1, 4] (top, left, bottom, right) of the crowded components).
    """
    components = crowded.size - 1
    width = labels.shape[1]
    flat_labels = labels.ravel()
    flat_seeds = seeds.ravel()
    flat_distance = distance.ravel()
    bits = flat_distance.view(np.uint32)
    tied = np.zeros(components + 1, dtype=np.bool_)
    boxes = np.zeros((components + 1, 4), dtype=np.int64)
    # The crowded pixels by component (a stable counting sort keeps each one's raveled order);
    # the markers take their piece's number.
    starts = np.zeros(components + 2, dtype=np.int64)
    for index in pixels:
        component = flat_labels[index]
        if not crowded[component]:
            continue
        row, col = index // width, index % width
        box = boxes[component]
        if starts[component + 1] == 0:
            box[0], box[1], box[2], box[3] = row, col, row + 1, col + 1
        else:
            box[0] = min(box[0], row)
            box[1] = min(box[1], col)
            box[2] = max(box[2], row + 1)
            box[3] = max(box[3], col + 1)
        starts[component + 1] += 1
    largest = 0
    for component in range(1, components + 1):
        largest = max(largest, starts[component + 1])
        starts[component + 1] += starts[component]
    grouped = np.empty(starts[components + 1], dtype=np.int64)
    filled = np.empty(components + 1, dtype=np.int64)
    for component in range(components + 1):
        filled[component] = starts[component]
    for index in pixels:
        component = flat_labels[index]
        if not crowded[component]:
            continue
        grouped[filled[component]] = index
        filled[component] += 1
        seed = flat_seeds[index]
        if usable[seed]:
            flat_labels[index] = components + seed
    work = np.empty((5, largest + 1), dtype=np.int64)
    for component in range(1, components + 1):
        if crowded[component] and starts[component + 1] > starts[component]:
            tied[component] = _flood_one(
                flat_labels,
                flat_distance,
                bits,
                labels.shape,
                components,
                grouped[starts[component] : starts[component + 1]],
                work,
            )
    return tied, boxes


#: Rows of the int64 workspace of `_flood_one`, one column per pixel of the largest component:
#: bucket heads, the next item on each item's bucket, each item's order key, pixel, and the heap.
_HEAD, _FOLLOWING, _KEYS, _WHERE, _HEAP = 0, 1, 2, 3, 4


@numba.njit(cache=True)
def _flood_one(  # long: a numba kernel: nopython code takes flat arrays and scalars, not objects
    flat_labels: np.ndarray,
    distance: np.ndarray,
    bits: np.ndarray,
    shape: tuple[int, int],
    components: int,
    pixels: np.ndarray,
    work: np.ndarray,
) -> bool:
    """Flood one component (its pixels, raveled order); whether its order hung on a marker tie
    (or on a non-finite relief, which is left for the replay)."""
    width = shape[1]
    finite, low, high = _relief_range(distance, pixels)
    if not finite:
        return True
    # Buckets by value, linearly: a non-decreasing function of the value, as the queue needs.
    buckets = max(pixels.size // 2, 1)
    scale = (buckets - 1) / (high - low) if high > low else 0.0
    for bucket in range(buckets):
        work[_HEAD, bucket] = -1
    component = _unflooded_label(flat_labels, pixels, components)
    pushed = _queue_markers(flat_labels, distance, bits, shape, pixels, component, low, scale, work)
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
            items = _load_bucket(work, current)
        item = work[_HEAP, 0] & _ITEM_MASK
        items = _heap_pop(work[_HEAP], items)
        level, index = work[_KEYS, item], work[_WHERE, item]
        label = flat_labels[index]
        if item < queued_markers:
            if level != group_key:
                group_key, group_piece = level, label
            elif label != group_piece:
                tied = True
        row, col = index // width, index % width
        for step in range(8):
            neighbour = _neighbour(shape, row, col, step)
            if neighbour < 0 or flat_labels[neighbour] != component:
                continue
            flat_labels[neighbour] = label
            key = _relief_key(bits[neighbour])
            bucket = current
            if key >= level:
                bucket = int((-np.float64(distance[neighbour]) - low) * scale)
            else:
                key = level
            items = _enqueue(work, items, current, bucket, key, neighbour, pushed)
            pushed += 1


@numba.njit(cache=True, inline="always")
def _neighbour(shape: tuple[int, int], row: int, col: int, step: int) -> int:
    """Flat index of the neighbour `step` (scikit-image's order) of (row, col); -1 off the image."""
    r, c = row + _STEP_ROWS[step], col + _STEP_COLS[step]
    if 0 <= r < shape[0] and 0 <= c < shape[1]:
        return r * shape[1] + c
    return -1


@numba.njit(cache=True, inline="always")
def _relief_range(distance: np.ndarray, pixels: np.ndarray) -> tuple[bool, float, float]:
    """(all finite, lowest, highest) relief (-distance, as float64) over the pixels."""
    low = high = -np.float64(distance[pixels[0]])
    for index in pixels:
        value = -np.float64(distance[index])
        if not np.isfinite(value):
            return False, low, high
        low, high = min(low, value), max(high, value)
    return True, low, high


@numba.njit(cache=True, inline="always")
def _unflooded_label(flat_labels: np.ndarray, pixels: np.ndarray, components: int) -> int:
    """The component number still on the pixels that are no marker."""
    for index in pixels:
        if flat_labels[index] <= components:
            return flat_labels[index]
    return -1


@numba.njit(cache=True, inline="always")
def _queue_markers(  # long: a numba kernel: nopython code takes flat arrays and scalars, not objects
    flat_labels: np.ndarray,
    distance: np.ndarray,
    bits: np.ndarray,
    shape: tuple[int, int],
    pixels: np.ndarray,
    component: int,
    low: float,
    scale: float,
    work: np.ndarray,
) -> int:
    """Queue, in raveled order, the markers with an unflooded neighbour (the others would flood
    nothing); how many."""
    pushed = 0
    for index in pixels:
        if flat_labels[index] == component:
            continue
        row, col = index // shape[1], index % shape[1]
        for step in range(8):
            neighbour = _neighbour(shape, row, col, step)
            if neighbour >= 0 and flat_labels[neighbour] == component:
                bucket = int((-np.float64(distance[index]) - low) * scale)
                _enqueue(work, 0, -1, bucket, _relief_key(bits[index]), index, pushed)
                pushed += 1
                break
    return pushed


@numba.njit(cache=True, inline="always")
def _enqueue(  # long: a numba kernel: nopython code takes flat arrays and scalars, not objects
    work: np.ndarray, items: int, current: int, bucket: int, key: int, index: int, item: int
) -> int:
    """Queue item number `item` (pixel `index`, order key `key`): into the heap if its bucket is
    the current one, else onto its bucket; the heap's new size."""
    work[_KEYS, item], work[_WHERE, item] = key, index
    if bucket == current:
        return _heap_push(work[_HEAP], items, (key << _ITEM_BITS) | item)
    work[_FOLLOWING, item] = work[_HEAD, bucket]
    work[_HEAD, bucket] = item
    return items


@numba.njit(cache=True, inline="always")
def _load_bucket(work: np.ndarray, bucket: int) -> int:
    """Move a bucket's items into the (empty) heap; its size."""
    items = 0
    item = work[_HEAD, bucket]
    while item >= 0:
        items = _heap_push(work[_HEAP], items, (work[_KEYS, item] << _ITEM_BITS) | item)
        item = work[_FOLLOWING, item]
    return items


@numba.njit(cache=True, inline="always")
def _heap_push(heap: np.ndarray, items: int, key: int) -> int:
    child = items
    while child > 0:
        parent = (child - 1) // 2
        if heap[parent] <= key:
            break
        heap[child] = heap[parent]
        child = parent
    heap[child] = key
    return items + 1


@numba.njit(cache=True, inline="always")
def _heap_pop(heap: np.ndarray, items: int) -> int:
    items -= 1
    moving = heap[items]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= items:
            break
        if child + 1 < items and heap[child + 1] < heap[child]:
            child += 1
        if heap[child] >= moving:
            break
        heap[i] = heap[child]
        i = child
    heap[i] = moving
    return items


# --- scikit-image's heap, replayed ---------------------------------------------------------------


@numba.njit(cache=True, inline="always")
def _before(values: np.ndarray, a: int, b: int, markers: int) -> bool:
    """Whether heap item a comes before item b: lower value first, then lower age.

    Items are numbered in push order: the `markers` first (age 0), then age 2, 3, ...
    """
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
    items = 0
    pushed = 0
    for index in seeds:
        values[pushed], pixel[pushed] = flat_relief[index], index
        items = _push(heap, values, items, pushed, markers)
        pushed += 1
    while items > 0:
        top = heap[0]
        items = _pop(heap, values, items, markers)
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
            items = _push(heap, values, items, pushed, markers)
            pushed += 1


@numba.njit(cache=True, inline="always")
def _push(heap: np.ndarray, values: np.ndarray, items: int, item: int, markers: int) -> int:
    """Sift `item` up from the end of the heap (the same comparisons as swapping it up)."""
    child = items
    while child > 0:
        parent = (child + 1) // 2 - 1
        if not _before(values, item, heap[parent], markers):
            break
        heap[child] = heap[parent]
        child = parent
    heap[child] = item
    return items + 1


@numba.njit(cache=True, inline="always")
def _pop(heap: np.ndarray, values: np.ndarray, items: int, markers: int) -> int:
    """Drop the top item: the last one moves to the top and sifts down."""
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
        if _before(values, heap[left], moving, markers):
            smallest, best = left, heap[left]
        if right < items and _before(values, heap[right], best, markers):
            smallest, best = right, heap[right]
        if smallest == i:
            break
        heap[i] = best
        i = smallest
    heap[i] = moving
    return items


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
        for col in range(width):
            label = labels[row, col]
            if label <= 0 or label > count or index_of[label] < 0:
                continue
            t = index_of[label]
            if areas[t] == 0:
                boxes[t, 0], boxes[t, 1], boxes[t, 2], boxes[t, 3] = row, col, row + 1, col + 1
            else:
                boxes[t, 1] = min(boxes[t, 1], col)
                boxes[t, 2] = row + 1
                boxes[t, 3] = max(boxes[t, 3], col + 1)
            areas[t] += 1
            if visited[row, col] or (row > 0 and labels[row - 1, col] == label):
                continue
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
