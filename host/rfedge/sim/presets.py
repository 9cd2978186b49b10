"""Simulator presets are data: TOML files in rfedge/presets/, overridable field by field."""

from __future__ import annotations

import tomllib
from importlib import resources

from rfedge.errors import RfedgeError


def available_presets() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("rfedge.presets").iterdir() if p.name.endswith(".toml"))


def apply_overrides(cfg: dict, overrides: dict | None, name: str, fixed_len=None) -> dict:
    """``cfg`` with ``overrides`` applied: unknown keys and wrong types are one clear error.

    Lists keep their length unless their key is missing from ``fixed_len`` (None: all fixed);
    ints are accepted where floats are expected.
    """
    for k, v in (overrides or {}).items():
        if k not in cfg:
            raise RfedgeError(f"preset {name!r} has no field {k!r} (fields: {', '.join(cfg)})", field=k)
        want = type(cfg[k])
        if want is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, want) or (want in (int, float) and isinstance(v, bool)):
            raise RfedgeError(f"expected {want.__name__}, got {v!r}", field=k)
        if isinstance(v, list):
            if (fixed_len is None or k in fixed_len) and len(v) != len(cfg[k]):
                raise RfedgeError(f"expected a list of {len(cfg[k])} values, got {v!r}", field=k)
            if cfg[k] and isinstance(cfg[k][0], float):
                v = [float(x) if isinstance(x, int) and not isinstance(x, bool) else x for x in v]
        cfg[k] = v
    return cfg


def load_preset(name: str, overrides: dict | None = None) -> dict:
    """The preset's fields with ``overrides`` applied; unknown keys and wrong types are errors."""
    f = resources.files("rfedge.presets") / f"{name}.toml"
    if not f.is_file():
        raise RfedgeError(f"unknown preset {name!r}; available: {', '.join(available_presets())}")
    return apply_overrides(tomllib.loads(f.read_text()), overrides, name)
