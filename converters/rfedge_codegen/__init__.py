"""rfedge_codegen: TFLite int8 flatbuffer -> standalone C99, bit-exact with TFLite Micro.

    from rfedge_codegen import generate
    report = generate(tflite_bytes, "out/", normalization={"mean": [...], "std": [...]})

Modules: ``graph`` (flatbuffer -> IR), ``lower`` (ops -> kernel calls, TFLM's Prepare math),
``qmath`` (TFLite's integer arithmetic in Python), ``planner`` (tensor lifetimes -> one arena),
``emit_c`` (C from templates/ + kernels from mcu/core), ``emit_tflm`` (``--format tflm``),
``reference`` (TFLite Micro as the truth), ``build`` (host compilation, used by tests and bench).
"""

from __future__ import annotations

from .api import analyze, generate

__all__ = ["analyze", "generate"]
