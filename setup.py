"""Only the C extension; everything else about the package is in pyproject.toml.

rfedge._csitext speeds up the ESP32 CSI text reader (rfedge.io.esp_csi), which falls back to numpy
without it. It needs Python.h and nothing else (no numpy headers), and is optional: where no C
compiler is found the install still succeeds, without it. ``pip install -e .`` builds it in place
(host/rfedge/_csitext.*.so); rerun that after editing host/rfedge/_csitext.c.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("rfedge._csitext", sources=["host/rfedge/_csitext.c"], optional=True)])
