"""Memory planner: every activation tensor gets a place in one static arena, from lifetimes.

* A view (RESHAPE, a contiguous SPLIT/UNPACK/slice output) lives inside its base tensor.
* An elementwise op whose input dies at that op writes its output over it (in place).
* Tensors sharing storage form a group; a group is alive from the op that writes its first
  member to the last op that reads any member.  Groups are placed greedily, largest first, at
  the lowest offset free for their whole lifetime (TFLM's GreedyMemoryPlanner does the same),
  so two groups share bytes only when their lifetimes do not overlap.

The model's input and output tensors are the caller's buffers (``in``/``out`` of
rfe_model_invoke) and take no arena space; the report counts them separately.
"""

from __future__ import annotations

import dataclasses

from .lower import Program

ALIGN = 4


@dataclasses.dataclass
class Placement:
    home: str          # "arena", "in", "out", "const"
    offset: int        # byte offset in the home (for const: into the array)
    const: str = ""    # const array name


@dataclasses.dataclass
class Plan:
    places: dict[int, Placement]
    arena_bytes: int                 # peak
    groups: list[dict]               # root, size, start, end, offset
    inplace: list[tuple[int, int]]   # (output, input) pairs written in place
    naive_bytes: int                 # sum of all arena tensors, no reuse (for the report)
    scratch: dict[int, int] = dataclasses.field(default_factory=dict)   # call index -> arena offset
    scratch_bytes: int = 0           # largest scratch of one call (inside arena_bytes)


def plan(program: Program, align: int = ALIGN) -> Plan:
    g = program.graph
    calls = program.calls
    parent: dict[int, tuple[int, int]] = {v.tensor: (v.base, v.offset) for v in program.views}

    def root(t: int) -> tuple[int, int]:
        off = 0
        while t in parent:
            t, o = parent[t]
            off += o
        return t, off

    graph_in, graph_out = set(g.inputs), set(g.outputs)
    # several inputs (outputs) are packed one after the other in the caller's buffer
    io_base = {}
    for lst in (g.inputs, g.outputs):
        acc = 0
        for t in lst:
            io_base[t] = acc
            acc += g.t(t).size

    def external(t: int) -> bool:
        r = root(t)[0]
        return r in graph_in or r in graph_out or g.t(r).is_const

    last_read: dict[int, int] = {}
    for c, call in enumerate(calls):
        for t in call.inputs:
            last_read[t] = c

    def group_last_read(r: int) -> int:
        return max((c for t, c in last_read.items() if root(t)[0] == r), default=-1)

    inplace = []
    for c, call in enumerate(calls):
        if not call.inplace_ok or len(call.outputs) != 1:
            continue
        y = call.outputs[0]
        if y in graph_out or y in parent or g.t(y).is_const:
            continue
        for pos in call.inplace_ok:
            x = call.inputs[pos]
            if g.t(x).is_const or external(x):
                continue
            r = root(x)[0]
            others = [t for k, t in enumerate(call.inputs) if k != pos and t != x]
            if any(not g.t(t).is_const and root(t)[0] == r for t in others):
                continue
            if group_last_read(r) != c:
                continue
            parent[y] = (x, 0)
            inplace.append((y, x))
            break

    # groups: root -> members
    first_write: dict[int, int] = {}
    for c, call in enumerate(calls):
        for t in call.outputs:
            r = root(t)[0]
            first_write.setdefault(r, c)
    groups: dict[int, dict] = {}
    tensors = set()
    for call in calls:
        tensors.update(call.inputs)
        tensors.update(call.outputs)
    tensors.update(v.tensor for v in program.views)
    for t in tensors:
        if g.t(t).is_const or external(t):
            continue
        r = root(t)[0]
        grp = groups.setdefault(r, {"root": r, "size": g.t(r).size, "start": first_write.get(r, 0), "end": -1})
        grp["end"] = max(grp["end"], last_read.get(t, -1))
    for grp in groups.values():
        grp["end"] = max(grp["end"], grp["start"])
    for c, call in enumerate(calls):   # a kernel's scratch lives in the arena during its call only
        if call.scratch:
            groups[-(c + 1)] = {"root": -(c + 1), "size": int(call.scratch), "start": c, "end": c}

    placed: list[dict] = []
    for grp in sorted(groups.values(), key=lambda d: (-d["size"], d["start"], d["root"])):
        busy = sorted((p["offset"], p["offset"] + p["size"]) for p in placed
                      if p["start"] <= grp["end"] and grp["start"] <= p["end"])
        off = 0
        for lo, hi in busy:
            if off + grp["size"] <= lo:
                break
            off = max(off, -(-hi // align) * align)
        grp["offset"] = off
        placed.append(grp)
    arena = max((p["offset"] + p["size"] for p in placed), default=0)

    places: dict[int, Placement] = {}
    for t in tensors:
        r, off = root(t)
        if g.t(t).is_const:
            places[t] = Placement("const", 0)
        elif r in graph_in:
            places[t] = Placement("in", io_base[r] + off)
        elif r in graph_out:
            places[t] = Placement("out", io_base[r] + off)
        elif g.t(r).is_const:
            places[t] = Placement("const", off)
        else:
            places[t] = Placement("arena", groups[r]["offset"] + off)
    naive = sum(g.t(t).size for t in tensors if not g.t(t).is_const and not external(t) and t not in parent)
    naive += sum(call.scratch for call in calls)
    scratch = {c: groups[-(c + 1)]["offset"] for c, call in enumerate(calls) if call.scratch}
    return Plan(places, arena, sorted(placed, key=lambda d: d["offset"]), inplace, naive, scratch,
                max((call.scratch for call in calls), default=0))
