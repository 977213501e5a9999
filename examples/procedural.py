"""Example pairs drawn from scratch: a binarised circuit board and an aerial scene.

Nothing here reads a photo or a data set. Every pixel comes from OpenCV drawing calls and
numpy noise driven by ``numpy.random.default_rng(seed)``, so one seed always gives the
same arrays.

* `make_pcb_pair` imitates a DeepPCB pair: a 640×640 binarised template (white copper on
  black) and the tested board with one defect of each of the six DeepPCB types, boxed in
  DeepPCB's ``x1 y1 x2 y2 type`` format.
* `make_aerial_pair` imitates a building-change pair (LEVIR-CD style): a 512×512 RGB
  rural/suburban scene in which a few buildings are built and a few are demolished, under
  a seasonal colour and brightness shift that is not change.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

Point = tuple[float, float]  # (x, y) in pixels
Cell = tuple[int, int]  # (row, column) on the routing grid
Colour = tuple[float, float, float]  # RGB, 0..255

# ---------------------------------------------------------------------------------------
# Printed circuit board (DeepPCB-like)
# ---------------------------------------------------------------------------------------

PCB_SIZE = 640
PCB_CELL = 12  # routing-grid pitch in pixels
PCB_ORIGIN = 8  # pixel position of grid row/column 0
PCB_GRID = (PCB_SIZE - PCB_ORIGIN) // PCB_CELL + 1
DEFECT_TYPES = ("open", "short", "mousebite", "spur", "copper", "pin-hole")

_FREE, _KEEP_OUT = -1, -2
_STEPS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))
_TURN_COST = (0.0, 0.4, 3.0)  # straight on, 45° and 90° turns; sharper turns are not routed
_TRACE_WIDTHS = (4, 5, 6, 8, 10)
_TRACE_WIDTH_ODDS = (0.15, 0.2, 0.35, 0.2, 0.1)


@dataclass(frozen=True)
class Segment:
    """A straight piece of trace from `start` to `end` (pixels), `width` px wide, on `net`."""

    start: Point
    end: Point
    width: int
    net: int

    @property
    def length(self) -> float:
        """Length in pixels."""
        return math.dist(self.start, self.end)

    def direction(self) -> np.ndarray:
        """Unit vector from start to end."""
        return (np.subtract(self.end, self.start) / max(self.length, 1e-9)).astype(np.float64)

    def normal(self) -> np.ndarray:
        """Unit vector perpendicular to the segment."""
        dx, dy = self.direction()
        return np.array([-dy, dx])

    def point_at(self, distance: float) -> np.ndarray:
        """The point `distance` px from the start along the segment."""
        return np.asarray(self.start, dtype=np.float64) + self.direction() * distance


@dataclass(frozen=True)
class Pad:
    """A copper pad: `shape` is "round" (size = radius) or "rect" (size = half width, half height).

    `hole` is the drill radius (0 for a solid surface-mount pad).
    """

    centre: Point
    shape: str
    size: tuple[int, int]
    hole: int = 0


@dataclass
class Board:
    """A drawn board: the binary image plus the geometry that defects are placed on."""

    image: np.ndarray
    segments: list[Segment]
    pads: list[Pad]


@dataclass(frozen=True)
class PcbPair:
    """Template, tested board, 0/255 box mask and the N×5 ``x1 y1 x2 y2 type`` boxes."""

    reference: np.ndarray
    comparison: np.ndarray
    truth: np.ndarray
    boxes: np.ndarray


@dataclass
class _Terminal:
    """A pad that a trace may start from: routing begins at `cell`, reached from the pad by `lead`."""

    cell: Cell
    lead: list[Point]
    group: int  # the component it belongs to (no nets between pins of one component)


@dataclass
class _Layout:
    """The routing grid being filled in, with the pads and terminals placed so far."""

    owner: np.ndarray
    pads: list[Pad] = field(default_factory=list)
    terminals: list[_Terminal] = field(default_factory=list)
    groups: int = 0


def cell_centre(cell: Cell) -> Point:
    """Pixel position (x, y) of a routing-grid cell (row, column)."""
    return (PCB_ORIGIN + cell[1] * PCB_CELL, PCB_ORIGIN + cell[0] * PCB_CELL)


def _region_free(owner: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]) -> bool:
    r0, r1 = rows
    c0, c1 = cols
    if r0 < 0 or c0 < 0 or r1 > owner.shape[0] or c1 > owner.shape[1]:
        return False
    return bool((owner[r0:r1, c0:c1] == _FREE).all())


def _blocked_for(owner: np.ndarray, own: set[int]) -> np.ndarray:
    """Cells a trace of the nets in `own` may not use: other copper and its one-cell clearance."""
    others = (owner != _FREE) & ~np.isin(owner, list(own))
    return cv2.dilate(others.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)


def _octile(a: Cell, b: Cell) -> float:
    dr, dc = abs(a[0] - b[0]), abs(a[1] - b[1])
    return max(dr, dc) + (math.sqrt(2) - 1) * min(dr, dc)


def route(owner: np.ndarray, start: Cell, goal: Cell, own: set[int]) -> list[Cell] | None:
    """A* route on the grid from `start` to `goal` with 0/45/90° moves, or None when blocked.

    Turns cost extra (90° much more than 45°) so routes look like hand-laid PCB traces.
    """
    blocked = _blocked_for(owner, own)
    blocked[start] = blocked[goal] = False
    best: dict[tuple[Cell, int], float] = {(start, -1): 0.0}
    parent: dict[tuple[Cell, int], tuple[Cell, int]] = {}
    frontier = [(_octile(start, goal), 0.0, start, -1)]
    while frontier:
        _, cost, cell, heading = heapq.heappop(frontier)
        if cell == goal:
            return _walk_back(parent, (cell, heading))
        if cost > best[(cell, heading)]:
            continue
        for direction, (dr, dc) in enumerate(_STEPS):
            turn = 0 if heading < 0 else min((direction - heading) % 8, (heading - direction) % 8)
            nxt = (cell[0] + dr, cell[1] + dc)
            if turn > 2 or not (0 <= nxt[0] < owner.shape[0] and 0 <= nxt[1] < owner.shape[1]):
                continue
            if blocked[nxt]:
                continue
            step = cost + (math.sqrt(2) if dr and dc else 1.0) + _TURN_COST[turn]
            if step < best.get((nxt, direction), math.inf):
                best[(nxt, direction)] = step
                parent[(nxt, direction)] = (cell, heading)
                heapq.heappush(frontier, (step + _octile(nxt, goal), step, nxt, direction))
    return None


def _walk_back(parent: dict[tuple[Cell, int], tuple[Cell, int]], key: tuple[Cell, int]) -> list[Cell]:
    cells = [key[0]]
    while key in parent:
        key = parent[key]
        cells.append(key[0])
    return cells[::-1]


def _corners(cells: list[Cell]) -> list[Cell]:
    """Drop the cells in the middle of straight runs, keeping start, bends and end."""
    if len(cells) < 3:
        return list(cells)
    kept = [cells[0]]
    for before, here, after in zip(cells, cells[1:], cells[2:]):
        if (here[0] - before[0], here[1] - before[1]) != (after[0] - here[0], after[1] - here[1]):
            kept.append(here)
    kept.append(cells[-1])
    return kept


def _new_group(layout: _Layout) -> int:
    layout.groups += 1
    return layout.groups


def _add_terminal(layout: _Layout, cells: list[Cell], lead: list[Point], group: int) -> None:
    """Register a terminal whose routing starts at the last of `cells` (all claimed for it)."""
    ident = len(layout.terminals)
    layout.terminals.append(_Terminal(cell=cells[-1], lead=lead, group=group))
    for cell in cells:
        layout.owner[cell] = ident


def place_ic(layout: _Layout, rng: np.random.Generator) -> bool:
    """Place a two-row IC footprint (SOIC-like rows of rectangular pads) if there is room.

    Pads sit two cells apart; each pin leads out two cells away from the body before
    routing. Some ICs get a large exposed pad under the body. Returns False when no free
    spot was found.
    """
    pins = int(rng.integers(4, 8))
    vertical = bool(rng.random() < 0.5)
    span_u, span_v = 2 * pins + 3, 15  # footprint with clearance, along and across the rows
    rows, cols = (span_u, span_v) if vertical else (span_v, span_u)
    for _ in range(60):
        r0 = int(rng.integers(1, PCB_GRID - rows))
        c0 = int(rng.integers(1, PCB_GRID - cols))
        if _region_free(layout.owner, (r0, r0 + rows), (c0, c0 + cols)):
            break
    else:
        return False

    def to_cell(u: int, v: int) -> Cell:
        return (r0 + 2 + u, c0 + 2 + v) if vertical else (r0 + 2 + v, c0 + 2 + u)

    group = _new_group(layout)
    for u in range(-1, 2 * pins):
        for v in range(4, 7):
            layout.owner[to_cell(u, v)] = _KEEP_OUT
    half = (11, 5) if vertical else (5, 11)
    for pin in range(pins):
        u = 2 * pin
        for row_v, outward in ((2, -1), (8, 1)):
            pad_cell = to_cell(u, row_v)
            cells = [to_cell(u, row_v + k * outward) for k in (-1, 0, 1, 2)]
            layout.pads.append(Pad(cell_centre(pad_cell), "rect", half))
            _add_terminal(layout, cells, [cell_centre(pad_cell)], group)
    if rng.random() < 0.6:
        a, b = cell_centre(to_cell(0, 5)), cell_centre(to_cell(2 * pins - 2, 5))
        centre = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
        along, across = int(abs(a[1] - b[1] if vertical else a[0] - b[0]) / 2) - 2, 13
        layout.pads.append(Pad(centre, "rect", (across, along) if vertical else (along, across)))
    return True


def place_header(layout: _Layout, rng: np.random.Generator) -> bool:
    """Place a pin-header row: through-hole ring pads two cells apart, pin 1 square."""
    pins = int(rng.integers(4, 9))
    vertical = bool(rng.random() < 0.5)
    rows, cols = (2 * pins + 3, 5) if vertical else (5, 2 * pins + 3)
    for _ in range(60):
        r0 = int(rng.integers(1, PCB_GRID - rows))
        c0 = int(rng.integers(1, PCB_GRID - cols))
        if _region_free(layout.owner, (r0, r0 + rows), (c0, c0 + cols)):
            break
    else:
        return False
    group = _new_group(layout)
    for pin in range(pins):
        cell = (r0 + 2 + 2 * pin, c0 + 2) if vertical else (r0 + 2, c0 + 2 + 2 * pin)
        shape = "rect" if pin == 0 else "round"
        layout.pads.append(Pad(cell_centre(cell), shape, (8, 8), hole=3))
        _add_terminal(layout, [cell], [], group)
    return True


def place_loose_pad(layout: _Layout, rng: np.random.Generator) -> bool:
    """Place one free-standing pad: a via ring, a solid round or square pad, or a drilled pad."""
    for _ in range(60):
        r, c = (int(v) for v in rng.integers(3, PCB_GRID - 3, size=2))
        if _region_free(layout.owner, (r - 3, r + 4), (c - 3, c + 4)):
            break
    else:
        return False
    kind = rng.choice(["via", "via", "round", "square", "drilled"])
    centre = cell_centre((r, c))
    if kind == "via":
        pad = Pad(centre, "round", (7, 7), hole=3)
    elif kind == "round":
        radius = int(rng.integers(8, 11))
        pad = Pad(centre, "round", (radius, radius))
    elif kind == "square":
        half = int(rng.integers(8, 10))
        pad = Pad(centre, "rect", (half, half))
    else:
        pad = Pad(centre, "round", (10, 10), hole=4)
    layout.pads.append(pad)
    _add_terminal(layout, [(r, c)], [], _new_group(layout))
    return True


def _edge_cell(cell: Cell, rng: np.random.Generator) -> tuple[Cell, Point]:
    """A border cell on the side nearest `cell` (jittered) and the off-image point it leads to."""
    last = PCB_GRID - 1
    distances = (cell[0], last - cell[0], cell[1], last - cell[1])
    side = int(np.argmin(np.asarray(distances) + rng.uniform(0, 8, size=4)))
    along = int(np.clip((cell[1] if side < 2 else cell[0]) + rng.integers(-4, 5), 1, last - 1))
    target = [(0, along), (last, along), (along, 0), (along, last)][side]
    x, y = cell_centre(target)
    beyond = [(x, -12.0), (x, PCB_SIZE + 12.0), (-12.0, y), (PCB_SIZE + 12.0, y)][side]
    return target, beyond


def _plan_nets(layout: _Layout, rng: np.random.Generator) -> list[tuple[int, int | None]]:
    """Pair terminals (or send them off the board's edge); some IC/header pins stay unconnected."""
    terminals = layout.terminals
    order = [int(i) for i in rng.permutation(len(terminals))]
    used: set[int] = set()
    nets: list[tuple[int, int | None]] = []
    for a in order:
        if a in used:
            continue
        used.add(a)
        roll = rng.random()
        if roll < 0.12:
            continue
        partners = [
            b for b in order if b not in used and terminals[b].group != terminals[a].group
        ]
        partners.sort(key=lambda b: _octile(terminals[a].cell, terminals[b].cell))
        if roll < 0.6 and partners:
            b = partners[int(rng.integers(0, min(3, len(partners))))]
            used.add(b)
            nets.append((a, b))
        else:
            nets.append((a, None))
    return nets


def route_nets(layout: _Layout, rng: np.random.Generator) -> list[Segment]:
    """Route every planned net on the grid (shortest first) and return the trace segments.

    A net to the board edge tries a few border cells; a net that cannot be routed is dropped
    (its pads stay, unconnected).
    """
    terminals = layout.terminals
    nets = _plan_nets(layout, rng)
    nets.sort(key=lambda net: _octile(terminals[net[0]].cell, _rough_goal(layout, net)))
    segments: list[Segment] = []
    for a, b in nets:
        width = int(rng.choice(_TRACE_WIDTHS, p=_TRACE_WIDTH_ODDS))
        points = _route_net(layout, a, b, rng)
        if points is not None:
            segments += [Segment(p, q, width, a) for p, q in zip(points, points[1:]) if p != q]
    return segments


def _rough_goal(layout: _Layout, net: tuple[int, int | None]) -> Cell:
    """Partner's cell, or the nearest border cell for a net that leaves the board."""
    a, b = net
    if b is not None:
        return layout.terminals[b].cell
    r, c = layout.terminals[a].cell
    last = PCB_GRID - 1
    return min([(0, c), (last, c), (r, 0), (r, last)], key=lambda cell: _octile(cell, (r, c)))


def _route_net(layout: _Layout, a: int, b: int | None, rng: np.random.Generator) -> list[Point] | None:
    """Route terminal `a` to terminal `b` (or off the edge), claim the cells, return the polyline."""
    terminals = layout.terminals
    own = {a} if b is None else {a, b}
    for _ in range(1 if b is not None else 4):
        if b is not None:
            goal, tail = terminals[b].cell, terminals[b].lead[::-1]
        else:
            goal, beyond = _edge_cell(terminals[a].cell, rng)
            tail = [beyond]
            if layout.owner[goal] != _FREE or _blocked_for(layout.owner, own)[goal]:
                continue
        cells = route(layout.owner, terminals[a].cell, goal, own)
        if cells is None:
            continue
        for cell in cells:
            layout.owner[cell] = a
        if b is not None:
            layout.owner[layout.owner == b] = a
        return terminals[a].lead + [cell_centre(c) for c in _corners(cells)] + tail
    return None


def draw_board(segments: list[Segment], pads: list[Pad]) -> np.ndarray:
    """Rasterise traces and pads as 255 on a black 640×640 board, then drill the holes."""
    image = np.zeros((PCB_SIZE, PCB_SIZE), np.uint8)
    for seg in segments:
        start = tuple(int(round(v)) for v in seg.start)
        end = tuple(int(round(v)) for v in seg.end)
        cv2.line(image, start, end, 255, seg.width, cv2.LINE_8)
    for pad in pads:
        x, y = (int(round(v)) for v in pad.centre)
        if pad.shape == "round":
            cv2.circle(image, (x, y), pad.size[0], 255, -1, cv2.LINE_8)
        else:
            hw, hh = pad.size
            cv2.rectangle(image, (x - hw, y - hh), (x + hw, y + hh), 255, -1)
    for pad in pads:
        if pad.hole:
            x, y = (int(round(v)) for v in pad.centre)
            cv2.circle(image, (x, y), pad.hole, 0, -1, cv2.LINE_8)
    return image


def make_board(rng: np.random.Generator) -> Board:
    """Lay out components (ICs, a header, loose pads and vias), route them and draw the board."""
    layout = _Layout(owner=np.full((PCB_GRID, PCB_GRID), _FREE, np.int32))
    for _ in range(int(rng.integers(3, 5))):
        place_ic(layout, rng)
    for _ in range(int(rng.integers(1, 3))):
        place_header(layout, rng)
    for _ in range(int(rng.integers(22, 30))):
        place_loose_pad(layout, rng)
    segments = route_nets(layout, rng)
    return Board(draw_board(segments, layout.pads), segments, layout.pads)


# --- defects ------------------------------------------------------------------------------

DefectDrawer = Callable[[np.ndarray, Board, np.random.Generator], bool]


def _inside(point: np.ndarray, margin: float) -> bool:
    return bool(margin <= point[0] < PCB_SIZE - margin and margin <= point[1] < PCB_SIZE - margin)


def _pick_point(board: Board, rng: np.random.Generator, min_width: int) -> tuple[Segment, np.ndarray] | None:
    """A random segment at least `min_width` wide and a point well inside it (away from bends)."""
    choices = [s for s in board.segments if s.width >= min_width]
    if not choices:
        return None
    seg = choices[int(rng.integers(0, len(choices)))]
    margin = seg.width + 14
    if seg.length < 2 * margin:
        return None
    point = seg.point_at(rng.uniform(margin, seg.length - margin))
    return (seg, point) if _inside(point, 30) else None


def _poly(points: list[np.ndarray]) -> np.ndarray:
    return np.round(np.asarray(points)).astype(np.int32).reshape(-1, 1, 2)


def _int_point(point: np.ndarray) -> tuple[int, int]:
    return int(round(point[0])), int(round(point[1]))


def draw_open(image: np.ndarray, board: Board, rng: np.random.Generator) -> bool:
    """Open: cut a 4–8 px gap right through a trace."""
    picked = _pick_point(board, rng, 4)
    if picked is None:
        return False
    seg, p = picked
    d, n = seg.direction(), seg.normal()
    gap, across = rng.uniform(2.0, 4.0), seg.width / 2 + 2
    tilt = n + d * rng.uniform(-0.3, 0.3)
    corners = [p - d * gap - tilt * across, p + d * gap - tilt * across, p + d * gap + tilt * across,
               p - d * gap + tilt * across]
    cv2.fillPoly(image, [_poly(corners)], 0)
    return True


def _parallel_pairs(segments: list[Segment]) -> list[tuple[Segment, Segment, float, float]]:
    """Segments of different nets running side by side 12–30 px apart, with their overlap."""
    pairs = []
    long = [s for s in segments if s.length >= 40]
    for i, s in enumerate(long):
        d = s.direction()
        for t in long[i + 1 :]:
            if t.net == s.net or abs(abs(float(np.dot(d, t.direction()))) - 1) > 1e-6:
                continue
            offset = np.subtract(t.start, s.start)
            if not 12 < abs(d[0] * offset[1] - d[1] * offset[0]) <= 30:
                continue
            a, b = sorted((float(np.dot(offset, d)), float(np.dot(np.subtract(t.end, s.start), d))))
            lo, hi = max(a, 0.0) + 16, min(b, s.length) - 16
            if hi - lo >= 8:
                pairs.append((s, t, lo, hi))
    return pairs


def draw_short(image: np.ndarray, board: Board, rng: np.random.Generator) -> bool:
    """Short: a copper bridge between two neighbouring traces of different nets."""
    pairs = _parallel_pairs(board.segments)
    if not pairs:
        return False
    s, t, lo, hi = pairs[int(rng.integers(0, len(pairs)))]
    p = s.point_at(rng.uniform(lo, hi))
    d = s.direction()
    q = np.asarray(t.start) + d * float(np.dot(p - np.asarray(t.start), d))
    if not _inside(p, 30) or not _inside(q, 30):
        return False
    skew = d * rng.uniform(-4, 4)
    cv2.line(image, _int_point(p), _int_point(q + skew), 255, int(rng.integers(3, 6)), cv2.LINE_8)
    return True


def draw_mousebite(image: np.ndarray, board: Board, rng: np.random.Generator) -> bool:
    """Mousebite: three to five small round bites along one edge of a wide trace."""
    picked = _pick_point(board, rng, 8)
    if picked is None:
        return False
    seg, p = picked
    d, n = seg.direction(), seg.normal() * rng.choice([-1.0, 1.0])
    radius = 3
    for k in range(int(rng.integers(3, 6))):
        centre = p + d * (k * rng.uniform(4.0, 6.0)) + n * (seg.width / 2 + rng.uniform(-0.5, 1.0))
        cv2.circle(image, _int_point(centre), radius, 0, -1, cv2.LINE_8)
    return True


def _free_run(image: np.ndarray, start: np.ndarray, direction: np.ndarray, limit: int) -> int:
    """How many px one can walk from `start` along `direction` over black before hitting copper."""
    for step in range(1, limit + 1):
        x, y = _int_point(start + direction * step)
        if not (0 <= x < PCB_SIZE and 0 <= y < PCB_SIZE) or image[y, x]:
            return step - 1
    return limit


def draw_spur(image: np.ndarray, board: Board, rng: np.random.Generator) -> bool:
    """Spur: a thin tapering spike sticking out of a trace edge, not reaching other copper."""
    picked = _pick_point(board, rng, 4)
    if picked is None:
        return False
    seg, p = picked
    d, n = seg.direction(), seg.normal() * rng.choice([-1.0, 1.0])
    angle = rng.uniform(-0.5, 0.5)
    out = n * math.cos(angle) + d * math.sin(angle)
    base = p + n * (seg.width / 2 - 1)
    room = _free_run(image, base + out * 3, out, 40) - 3
    length = min(float(rng.uniform(10, 18)), float(room))
    if length < 9:
        return False
    half = rng.uniform(2.0, 3.5)
    cv2.fillPoly(image, [_poly([base - d * half, base + d * half, base + out * length])], 255)
    return True


def draw_copper(image: np.ndarray, board: Board, rng: np.random.Generator) -> bool:
    """Spurious copper: an irregular blob of a few overlapping ellipses on bare board."""
    radius = int(rng.integers(6, 11))
    clearance = cv2.distanceTransform(np.where(image > 0, 0, 255).astype(np.uint8), cv2.DIST_L2, 5)
    ys, xs = np.nonzero(clearance[40:-40, 40:-40] > 1.5 * radius + 7)
    if len(xs) == 0:
        return False
    k = int(rng.integers(0, len(xs)))
    centre = np.array([xs[k] + 40.0, ys[k] + 40.0])
    for _ in range(int(rng.integers(2, 5))):
        offset = rng.uniform(-radius / 2, radius / 2, size=2)
        axes = (int(rng.integers(2, radius + 1)), int(rng.integers(2, radius + 1)))
        cv2.ellipse(image, _int_point(centre + offset), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    return True


def draw_pinhole(image: np.ndarray, board: Board, rng: np.random.Generator) -> bool:
    """Pin-hole: a small round hole inside a solid pad (or, failing that, a wide trace)."""
    solid = [p for p in board.pads if not p.hole and min(p.size) >= 8]
    radius = int(rng.integers(2, 4))
    if solid and rng.random() < 0.8:
        pad = solid[int(rng.integers(0, len(solid)))]
        reach = min(pad.size) - radius - 3
        offset = rng.choice([-1.0, 1.0], size=2) * rng.uniform(0.4, 1.0, size=2) * reach
        centre = np.asarray(pad.centre) + offset
    else:
        picked = _pick_point(board, rng, 10)
        if picked is None:
            return False
        seg, p = picked
        centre = p + seg.normal() * rng.uniform(-1, 1)
    x, y = _int_point(centre)
    ring = radius + 2
    if not _inside(centre, 30) or not image[y - ring : y + ring + 1, x - ring : x + ring + 1].all():
        return False
    cv2.circle(image, (x, y), radius, 0, -1, cv2.LINE_8)
    return True


DEFECT_DRAWERS: tuple[DefectDrawer, ...] = (
    draw_open, draw_short, draw_mousebite, draw_spur, draw_copper, draw_pinhole,
)


def _box_around(changed: np.ndarray, margin: int) -> tuple[int, int, int, int]:
    """Inclusive box (x1, y1, x2, y2) around the True pixels, grown by `margin` and clipped."""
    ys, xs = np.nonzero(changed)
    height, width = changed.shape
    return (max(int(xs.min()) - margin, 0), max(int(ys.min()) - margin, 0),
            min(int(xs.max()) + margin, width - 1), min(int(ys.max()) + margin, height - 1))


def _boxes_apart(box: tuple[int, int, int, int], others: list[tuple[int, int, int, int]], gap: int) -> bool:
    x1, y1, x2, y2 = box
    return all(x1 > b[2] + gap or b[0] > x2 + gap or y1 > b[3] + gap or b[1] > y2 + gap for b in others)


def add_defect(
    comparison: np.ndarray, board: Board, rng: np.random.Generator, drawer: DefectDrawer,
    taken: list[tuple[int, int, int, int]],
) -> tuple[int, int, int, int]:
    """Draw one defect into `comparison` (in place) and return its box.

    The box is the bounding box of the pixels the defect changed plus a 3–6 px margin; it
    is kept at least 40 px from the boxes in `taken` so defects never share a box.
    """
    for _ in range(300):
        candidate = comparison.copy()
        if not drawer(candidate, board, rng):
            continue
        changed = candidate != comparison
        if not changed.any():
            continue
        box = _box_around(changed, int(rng.integers(3, 7)))
        if _boxes_apart(box, taken, 40):
            comparison[:] = candidate
            return box
    raise RuntimeError(f"could not place a {drawer.__name__} defect on this board")


def rasterise_boxes(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """0/255 mask with every inclusive-corner box of an N×5 box array filled."""
    mask = np.zeros(shape, np.uint8)
    for x1, y1, x2, y2, _ in boxes:
        mask[y1 : y2 + 1, x1 : x2 + 1] = 255
    return mask


def make_pcb_pair(seed: int) -> PcbPair:
    """A DeepPCB-like pair: defect-free template and the same board with six typed defects.

    Both images are 640×640 uint8 with only 0 and 255 and are registered exactly; the
    boxes (type 1 open, 2 short, 3 mousebite, 4 spur, 5 spurious copper, 6 pin-hole) are
    what `format_boxes` writes.
    """
    rng = np.random.default_rng(seed)
    board = make_board(rng)
    comparison = board.image.copy()
    boxes: list[tuple[int, int, int, int]] = []
    for drawer in DEFECT_DRAWERS:
        boxes.append(add_defect(comparison, board, rng, drawer, boxes))
    table = np.array([(*box, kind) for kind, box in enumerate(boxes, start=1)], dtype=np.int64)
    return PcbPair(board.image, comparison, rasterise_boxes(table, comparison.shape), table)


def format_boxes(boxes: np.ndarray) -> str:
    """DeepPCB annotation text: one ``x1 y1 x2 y2 type`` line per box."""
    return "".join(" ".join(str(int(v)) for v in row) + "\n" for row in boxes)


# ---------------------------------------------------------------------------------------
# Aerial scene (building change under a seasonal shift)
# ---------------------------------------------------------------------------------------

AERIAL_SIZE = 512
SHADOW_OFFSET = np.array([4.0, 3.0])  # sun in the upper left: shadows fall down and right
ROOF_COLOURS: tuple[Colour, ...] = (
    (160, 82, 62), (140, 64, 50), (96, 96, 102), (126, 102, 86), (186, 182, 174),
)
BARN_ROOF_COLOURS: tuple[Colour, ...] = ((150, 156, 160), (112, 120, 118), (170, 90, 70))
FIELD_COLOURS: tuple[tuple[Colour, float], ...] = (  # base colour, stripe strength
    ((104, 132, 62), 0.04), ((124, 148, 78), 0.0), ((194, 176, 116), 0.035),
    ((138, 114, 88), 0.06), ((92, 120, 58), 0.03), ((150, 160, 96), 0.02),
)
ASPHALT: Colour = (108, 108, 106)
GRAVEL: Colour = (172, 158, 132)
LAWN: Colour = (112, 150, 74)
SOIL: Colour = (156, 132, 100)


@dataclass(frozen=True)
class House:
    """A building seen from above: rotated rectangle (`size` = length, depth) and roof colour."""

    centre: Point
    size: tuple[float, float]
    angle: float  # degrees
    roof: Colour

    def corners(self, grow: float = 0.0) -> np.ndarray:
        """The 4 footprint corners (float32 4×2), the rectangle grown by `grow` px on every side."""
        size = (self.size[0] + 2 * grow, self.size[1] + 2 * grow)
        return cv2.boxPoints((self.centre, size, self.angle)).astype(np.float32)


@dataclass(frozen=True)
class AerialPair:
    """Reference and comparison RGB images (uint8) and the 0/255 building-change mask."""

    reference: np.ndarray
    comparison: np.ndarray
    truth: np.ndarray


@dataclass
class _Scene:
    """Everything both dates share, plus which buildings differ between them."""

    ground: np.ndarray  # float32 fields and roads, no buildings or trees
    grain: np.ndarray  # float32 fine noise in about -1..1, for texturing patches
    existing: list[House]
    demolished: list[House]
    new: list[House]
    gardens: list[np.ndarray]
    trees: list[tuple[Point, float, Colour]]


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """Value noise in about -1..1 with features about `cell` px across (bicubic-upsampled)."""
    small = rng.standard_normal((shape[0] // cell + 3, shape[1] // cell + 3)).astype(np.float32)
    big = cv2.resize(small, ((small.shape[1]) * cell, (small.shape[0]) * cell), interpolation=cv2.INTER_CUBIC)
    return big[cell : cell + shape[0], cell : cell + shape[1]] / 1.5


def _polygon_mask(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32).reshape(-1, 1, 2)], 1)
    return mask.astype(bool)


def parcel_grid(rng: np.random.Generator, count: int = 4, jitter: float = 24.0) -> np.ndarray:
    """Corner points ((count+1)×(count+1)×2, x/y) of a jittered grid of field parcels.

    Border corners lie beyond the image so parcels run off its edges.
    """
    step = AERIAL_SIZE / count
    grid = np.zeros((count + 1, count + 1, 2), np.float64)
    for i in range(count + 1):
        for j in range(count + 1):
            x, y = j * step, i * step
            if 0 < j < count:
                x += rng.uniform(-jitter, jitter)
            else:
                x += -40 if j == 0 else 40
            if 0 < i < count:
                y += rng.uniform(-jitter, jitter)
            else:
                y += -40 if i == 0 else 40
            grid[i, j] = (x, y)
    return grid


def field_texture(
    rng: np.random.Generator, base: Colour, stripes: float, shape: tuple[int, int],
) -> np.ndarray:
    """A field: base colour with patchy brightness, fine grain and crop rows in one direction."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    angle, period = rng.uniform(0, math.pi), rng.uniform(4.0, 7.0)
    rows = np.sin((xs * math.cos(angle) + ys * math.sin(angle)) * (2 * math.pi / period))
    shade = 1 + 0.06 * smooth_noise(rng, shape, 48) + 0.03 * smooth_noise(rng, shape, 6) + stripes * rows
    colour = np.asarray(base, np.float32) + rng.uniform(-10, 10, size=3).astype(np.float32)
    return shade[:, :, None] * colour


def draw_fields(rng: np.random.Generator, grid: np.ndarray) -> np.ndarray:
    """Paint every parcel of the grid with its own field texture."""
    shape = (AERIAL_SIZE, AERIAL_SIZE)
    image = np.zeros((*shape, 3), np.float32)
    for i in range(grid.shape[0] - 1):
        for j in range(grid.shape[1] - 1):
            quad = np.array([grid[i, j], grid[i, j + 1], grid[i + 1, j + 1], grid[i + 1, j]])
            base, stripes = FIELD_COLOURS[int(rng.integers(0, len(FIELD_COLOURS)))]
            mask = _polygon_mask(shape, quad)
            image[mask] = field_texture(rng, base, stripes, shape)[mask]
    return image


def _draw_band(image: np.ndarray, mask: np.ndarray, colour: Colour, grain: np.ndarray, amount: float) -> None:
    """Fill the pixels of `mask` with `colour` textured by `grain`."""
    image[mask] = np.asarray(colour, np.float32) * (1 + amount * grain[mask])[:, None]


def road_mask(polylines: list[np.ndarray], width: int) -> np.ndarray:
    """Boolean mask of the given polylines drawn `width` px wide."""
    mask = np.zeros((AERIAL_SIZE, AERIAL_SIZE), np.uint8)
    for line in polylines:
        cv2.polylines(mask, [np.round(line).astype(np.int32).reshape(-1, 1, 2)], False, 1, width, cv2.LINE_8)
    return mask.astype(bool)


def plan_houses(
    rng: np.random.Generator, roads: list[np.ndarray], occupied: np.ndarray, centre: np.ndarray,
    sizes: tuple[tuple[float, float], tuple[float, float]], spacing: float, roofs: tuple[Colour, ...],
    spread: float,
) -> list[House]:
    """Buildings along both sides of the roads, facing them, denser near `centre`.

    `sizes` gives the (min, max) length and depth; a site is skipped when its plot (the
    house grown by 6 px plus its shadow) would touch the road or anything in `occupied`,
    which is updated in place.
    """
    houses = []
    for line in roads:
        for a, b in zip(line, line[1:]):
            length = float(np.linalg.norm(b - a))
            d = (b - a) / length
            n = np.array([-d[1], d[0]])
            for t in np.arange(rng.uniform(0, spacing), length, spacing):
                for side in (-1.0, 1.0):
                    point = a + d * t
                    keep = 0.08 + 0.9 * math.exp(-((np.linalg.norm(point - centre) / spread) ** 2))
                    if rng.random() > keep:
                        continue
                    house = _house_at(rng, point, d, n * side, sizes, roofs)
                    plot = plot_polygon(house)
                    if plot.min() < 6 or plot.max() > AERIAL_SIZE - 6:
                        continue
                    mask = _polygon_mask(occupied.shape, plot)
                    if (mask & occupied).any():
                        continue
                    occupied |= mask
                    houses.append(house)
    return houses


def _house_at(
    rng: np.random.Generator, point: np.ndarray, along: np.ndarray, outward: np.ndarray,
    sizes: tuple[tuple[float, float], tuple[float, float]], roofs: tuple[Colour, ...],
) -> House:
    length, depth = rng.uniform(*sizes[0]), rng.uniform(*sizes[1])
    setback = rng.uniform(15, 19) + depth / 2
    centre = point + outward * setback + along * rng.uniform(-3, 3)
    angle = math.degrees(math.atan2(along[1], along[0])) + rng.uniform(-4, 4)
    roof = roofs[int(rng.integers(0, len(roofs)))]
    return House((float(centre[0]), float(centre[1])), (float(length), float(depth)), angle, roof)


def plot_polygon(house: House, grow: float = 6.0) -> np.ndarray:
    """Convex hull of the house grown by `grow` px and its shadow: the ground it changes."""
    corners = house.corners(grow)
    hull = cv2.convexHull(np.concatenate([corners, corners + SHADOW_OFFSET.astype(np.float32)]))
    return hull.reshape(-1, 2)


def change_polygon(house: House) -> np.ndarray:
    """The ground a building change repaints: footprint grown by 4 px plus its shadow."""
    return plot_polygon(house, 4.0)


def draw_house(image: np.ndarray, house: House) -> None:
    """Shadow (darkened ground), then a gabled roof: two halves split along the ridge."""
    corners = house.corners()
    shadow = cv2.convexHull(np.concatenate([corners, corners + SHADOW_OFFSET.astype(np.float32)]))
    dark = _polygon_mask(image.shape[:2], shadow.reshape(-1, 2))
    image[dark] *= 0.5
    c0, c1, c2, c3 = corners
    if np.linalg.norm(c1 - c0) < np.linalg.norm(c2 - c1):
        c0, c1, c2, c3 = c1, c2, c3, c0
    m12, m30 = (c1 + c2) / 2, (c3 + c0) / 2
    roof = np.asarray(house.roof, np.float32)
    for half, shade in (([c0, c1, m12, m30], 1.0), ([m30, m12, c2, c3], 0.78)):
        image[_polygon_mask(image.shape[:2], np.array(half))] = roof * shade


def draw_patch(image: np.ndarray, polygon: np.ndarray, colour: Colour, grain: np.ndarray) -> None:
    """Bare ground over `polygon` (construction pad or demolition site) with a coarse grain."""
    _draw_band(image, _polygon_mask(image.shape[:2], polygon), colour, grain, 0.12)


def plan_trees(
    rng: np.random.Generator, grid: np.ndarray, occupied: np.ndarray,
) -> list[tuple[Point, float, Colour]]:
    """Tree crowns: a few clumps and woods in the fields plus hedgerows along parcel edges."""
    centres: list[np.ndarray] = []
    for _ in range(int(rng.integers(7, 11))):
        middle, spread = rng.uniform(20, AERIAL_SIZE - 20, size=2), rng.uniform(6, 22)
        centres += list(middle + rng.normal(0, spread, size=(int(rng.integers(6, 40)), 2)))
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            for di, dj in ((0, 1), (1, 0)):
                if i + di < grid.shape[0] and j + dj < grid.shape[1] and rng.random() < 0.35:
                    a, b = grid[i, j], grid[i + di, j + dj]
                    for t in np.arange(0, 1, 7 / np.linalg.norm(b - a)):
                        centres.append(a + (b - a) * t + rng.normal(0, 1.5, size=2))
    trees = []
    for centre in centres:
        radius = float(rng.uniform(3, 7))
        x, y = int(round(centre[0])), int(round(centre[1]))
        if not (0 <= x < AERIAL_SIZE and 0 <= y < AERIAL_SIZE) or occupied[
            max(y - 8, 0) : y + 9, max(x - 8, 0) : x + 9
        ].any():
            continue
        green = (rng.uniform(40, 70), rng.uniform(70, 100), rng.uniform(30, 50))
        trees.append(((float(centre[0]), float(centre[1])), radius, green))
    return trees


def draw_trees(image: np.ndarray, trees: list[tuple[Point, float, Colour]]) -> None:
    """Shadows first (darkening), then crowns with a lighter upper-left highlight."""
    shadow = np.zeros(image.shape[:2], np.uint8)
    for (x, y), radius, _ in trees:
        dx, dy = SHADOW_OFFSET * radius / 5
        cv2.circle(shadow, (int(round(x + dx)), int(round(y + dy))), int(round(radius)), 1, -1)
    image[shadow.astype(bool)] *= 0.55
    for (x, y), radius, colour in trees:
        cv2.circle(image, (int(round(x)), int(round(y))), int(round(radius)), colour, -1)
    for (x, y), radius, colour in trees:
        spot = (int(round(x - radius * 0.3)), int(round(y - radius * 0.3)))
        cv2.circle(image, spot, max(int(round(radius * 0.5)), 1), tuple(c * 1.3 for c in colour), -1)


def seasonal_shift(image: np.ndarray) -> np.ndarray:
    """A later season and other light: greens turn yellower and paler, everything brighter and warmer.

    A per-pixel colour mapping of the whole float RGB image (0..255): not a change.
    """
    hsv = cv2.cvtColor(np.clip(image, 0, 255) / 255.0, cv2.COLOR_RGB2HSV)
    hue, sat = hsv[:, :, 0], hsv[:, :, 1]
    green = np.clip(1 - np.abs(hue - 95) / 45, 0, 1) * np.clip(sat * 4, 0, 1)
    hsv[:, :, 0] = hue - 9 * green
    hsv[:, :, 1] = sat * (1 - 0.12 * green)
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] * 1.04, 0, 1)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0
    return rgb + np.array([2.0, 1.0, -2.0], np.float32)


def _finish(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sensor look: slight blur and fresh noise, rounded to uint8."""
    soft = cv2.GaussianBlur(image, (3, 3), 0.7)
    noisy = soft + rng.normal(0, 2.0, size=soft.shape).astype(np.float32)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def village_streets(rng: np.random.Generator, main: np.ndarray, village: np.ndarray) -> list[np.ndarray]:
    """Two side streets leaving the main road near the village centre, one each side of it."""
    streets = []
    for sign in (-1.0, 1.0):
        x = float(village[0] + sign * rng.uniform(55, 95))
        k = int(np.clip(np.searchsorted(main[:, 0], x), 1, len(main) - 1))
        a, b = main[k - 1], main[k]
        start = a + (b - a) * (x - a[0]) / (b[0] - a[0])
        d = (b - a) / np.linalg.norm(b - a)
        turn = math.radians(rng.uniform(-6, 6))
        away = np.array([-d[1], d[0]]) * rng.choice([-1.0, 1.0])
        away = np.array([away[0] * math.cos(turn) - away[1] * math.sin(turn),
                         away[0] * math.sin(turn) + away[1] * math.cos(turn)])
        streets.append(np.array([start, start + away * rng.uniform(100, 160)]))
    return streets


def make_scene(rng: np.random.Generator) -> _Scene:
    """Fields, a main road and a track through a village, trees, and the building plan."""
    shape = (AERIAL_SIZE, AERIAL_SIZE)
    grid = parcel_grid(rng)
    ground = draw_fields(rng, grid)
    grain = smooth_noise(rng, shape, 2)
    row, col = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    main, track, village = grid[row, :, :], grid[:, col, :], grid[row, col]
    streets = village_streets(rng, main, village)
    _draw_band(ground, road_mask([track], 6), GRAVEL, grain, 0.06)
    _draw_band(ground, road_mask(streets, 7), ASPHALT, grain, 0.04)
    _draw_band(ground, road_mask([main], 10), ASPHALT, grain, 0.04)
    occupied = road_mask([main], 12) | road_mask([track], 8) | road_mask(streets, 9)
    sizes = ((16, 26), (11, 16))
    houses = plan_houses(rng, [main, *streets], occupied, village, sizes, 25, ROOF_COLOURS, 170)
    barns = plan_houses(rng, [track], occupied, village, ((32, 44), (16, 22)), 60, BARN_ROOF_COLOURS, 300)
    order = [int(i) for i in rng.permutation(len(houses))]
    new = [houses[i] for i in order[:2]] + barns[:1]
    demolished = [houses[i] for i in order[2:4]]
    existing = [houses[i] for i in order[4:]] + barns[1:]
    gardens = [plot_polygon(h, 5.0) for h in existing + demolished if h.roof in ROOF_COLOURS]
    trees = plan_trees(rng, grid, cv2.dilate(occupied.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
    return _Scene(ground, grain, existing, demolished, new, gardens, trees)


def render_reference(scene: _Scene) -> np.ndarray:
    """The earlier date as float RGB: gardens, the existing and the later-demolished buildings, trees."""
    image = scene.ground.copy()
    for garden in scene.gardens:
        _draw_band(image, _polygon_mask(image.shape[:2], garden), LAWN, scene.grain, 0.05)
    for house in scene.existing + scene.demolished:
        draw_house(image, house)
    draw_trees(image, scene.trees)
    return image


def render_comparison(scene: _Scene) -> np.ndarray:
    """The later date as float RGB: demolition sites, construction pads and new buildings."""
    image = scene.ground.copy()
    for garden in scene.gardens:
        _draw_band(image, _polygon_mask(image.shape[:2], garden), LAWN, scene.grain, 0.05)
    for house in scene.demolished:
        draw_patch(image, change_polygon(house), SOIL, scene.grain)
    for house in scene.new:
        draw_patch(image, change_polygon(house), SOIL, scene.grain)
    for house in scene.existing + scene.new:
        draw_house(image, house)
    draw_trees(image, scene.trees)
    return seasonal_shift(image)


def change_mask(scene: _Scene) -> np.ndarray:
    """0/255 mask of the built and demolished buildings' ground, grown 2 px for the blur."""
    mask = np.zeros((AERIAL_SIZE, AERIAL_SIZE), np.uint8)
    for house in scene.demolished + scene.new:
        cv2.fillPoly(mask, [np.round(change_polygon(house)).astype(np.int32).reshape(-1, 1, 2)], 255)
    return cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))


def make_aerial_pair(seed: int) -> AerialPair:
    """A 512×512 RGB building-change pair with a mild seasonal shift that is not change."""
    rng = np.random.default_rng(seed)
    scene = make_scene(rng)
    reference = _finish(render_reference(scene), rng)
    comparison = _finish(render_comparison(scene), rng)
    return AerialPair(reference, comparison, change_mask(scene))
