"""The C emitter: fills the small templates in templates/ with the lowered, planned program and
copies the kernels it calls from mcu/core, so the output directory compiles on its own."""

from __future__ import annotations

from pathlib import Path
from string import Template

import numpy as np

from .lower import KERNEL_DEPENDS, KERNEL_FILES, Program
from .planner import Plan

TEMPLATES = Path(__file__).resolve().parent / "templates"
KERNEL_HEADERS = ("rfe_kernels.h", "rfe_fixedpoint.h")


def kernel_dir() -> Path:
    """mcu/core of the source tree this package was installed from (editable install)."""
    here = Path(__file__).resolve()
    for base in (here.parents[2], here.parents[1]):
        d = base / "mcu" / "core"
        if (d / "rfe_kernels.h").is_file():
            return d
    from rfedge.errors import RfedgeError

    raise RfedgeError(f"cannot find the kernel sources (mcu/core/rfe_kernels.h) near {here}; "
                      "install rfedge from its source tree (pip install -e .)")


def template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text())


def c_array(values, per_line: int = 20, indent: str = "    ") -> str:
    vals = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    lines = [indent + ", ".join(vals[i:i + per_line]) + "," for i in range(0, len(vals), per_line)]
    return "\n".join(lines) if lines else indent + "0,"


def c_float(v: float) -> str:
    return repr(float(np.float32(v)))


def _field(v) -> str:
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(_field(x) for x in v) + "}"
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    if isinstance(v, (int, np.integer)):
        v = int(v)
        return str(v) if v != -(1 << 31) else "(-2147483647 - 1)"
    return str(v)


def _pointer(program: Program, plan: Plan, t: int) -> str:
    ten = program.graph.t(t)
    if ten.is_const:
        return program.consts.add(ten.data, "int8_t", f"constant {ten.describe()}")
    p = plan.places[t]
    base = {"in": "in", "out": "out", "arena": "A"}[p.home]
    return base if p.offset == 0 else f"{base} + {p.offset}"


def _shape(t) -> str:
    return "[" + ",".join(str(d) for d in t.shape) + "]"


def kernel_files(program: Program) -> list[str]:
    files = {KERNEL_FILES[k] for k in program.kernels()}
    for f in list(files):
        files.update(KERNEL_DEPENDS.get(f, []))
    return sorted(files)


def render(program: Program, plan: Plan, *, name: str, source: str, title: str, normalization,
           golden_input: np.ndarray, golden_output: np.ndarray, golden_note: str) -> dict[str, str]:
    """{file name: text} of the generated model (kernels not included)."""
    g = program.graph
    fn = f"rfe_{name}"
    P = fn.upper()
    body, params = [], []
    for c, call in enumerate(program.calls):
        op = call.op
        ins = " ".join(f"t{i}{_shape(g.t(i))}" for i in call.inputs if not g.t(i).is_const)
        outs = " ".join(f"t{i}{_shape(g.t(i))}" for i in call.outputs)
        what = " + ".join(f"op {o.index} {o.opcode}" for o in [op] + call.fused)
        body.append(f"    /* {what}: {ins} -> {outs} */")
        names = {f"p{k}": f"{fn}_{pname}" for k, (pname, _, _) in enumerate(call.params)}
        for k, (pname, ctype, fields) in enumerate(call.params):
            inits = ", ".join(f".{f} = {v.format(**names) if isinstance(v, str) else _field(v)}"
                              for f, v in fields.items())
            params.append(f"static const {ctype} {names[f'p{k}']} = {{{inits}}};")
        if call.scratch:
            off = plan.scratch[c]
            names["s0"] = "A" if off == 0 else f"A + {off}"
        for k, t in enumerate(call.inputs):
            names[f"i{k}"] = _pointer(program, plan, t)
        for k, t in enumerate(call.outputs):
            names[f"o{k}"] = _pointer(program, plan, t)
        for s in call.stmts:
            body.append("    " + s.format(**names))
    consts = []
    for a in program.consts.arrays:
        consts.append(f"/* {a.comment} */\nstatic const {a.ctype} {a.name}[{a.values.size}] = {{\n"
                      f"{c_array(a.values)}\n}};")
    x, y = g.t(g.inputs[0]), g.t(g.outputs[0])
    in_size = sum(g.t(i).size for i in g.inputs)
    out_size = sum(g.t(i).size for i in g.outputs)
    in_shape = " + ".join(_shape(g.t(i)) for i in g.inputs)
    out_shape = " + ".join(_shape(g.t(i)) for i in g.outputs)
    mean = std = None
    note = "No normalization was given: mean 0, std 1."
    if normalization is not None:
        mean = np.asarray(normalization["mean"], np.float32).reshape(-1)
        std = np.asarray(normalization["std"], np.float32).reshape(-1)
        note = normalization.get("note", "")
        if len(g.inputs) != 1 or (x.shape and mean.size != x.shape[-1]):
            from rfedge.errors import RfedgeError

            raise RfedgeError(f"normalization has {mean.size} channels; the model needs one input whose last "
                              f"axis has that many (inputs: {in_shape})")
    nch = 0 if mean is None else int(mean.size)
    hist: dict[str, int] = {}
    for op in g.ops:
        hist[op.opcode] = hist.get(op.opcode, 0) + 1
    summary = (f"{len(g.ops)} ops (" + ", ".join(f"{k} {v}" for k, v in sorted(hist.items())) + f"); "
               f"{len(program.calls)} kernel calls, {len(program.views)} views, {len(plan.inplace)} in place.")
    subs = dict(
        name=name, fn=fn, P=P, source=source, title=title, summary=summary,
        input_size=in_size, output_size=out_size, input_shape=in_shape, output_shape=out_shape,
        arena_bytes=plan.arena_bytes, naive_bytes=plan.naive_bytes, scratch_bytes=plan.scratch_bytes, arena_decl=(f"static int32_t {fn}_arena[{-(-plan.arena_bytes // 4)}];\n#define A ((int8_t *){fn}_arena)"
                    if plan.arena_bytes else "/* (none: every tensor is the input, the output or a view) */"),
        input_scale=c_float(x.s), input_zero_point=x.zp, output_scale=c_float(y.s), output_zero_point=y.zp,
        norm_note=note, norm_channels=nch, norm_channels_or_1=max(nch, 1),
        norm_mean=", ".join(c_float(v) + "f" for v in (mean if mean is not None else [0.0])),
        norm_std=", ".join(c_float(v) + "f" for v in (std if std is not None else [1.0])),
        const_bytes=program.consts.nbytes, consts="\n\n".join(consts), params="\n".join(params),
        body="\n".join(body), golden_note=golden_note,
        golden_input=c_array(golden_input), golden_output=c_array(golden_output),
    )
    return {
        f"{name}.h": template("model.h.in").substitute(subs),
        f"{name}.c": template("model.c.in").substitute(subs),
        f"{name}_selftest.c": template("selftest.c.in").substitute(subs),
    }
