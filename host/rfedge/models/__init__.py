"""Gesture models: the compact DS-CNN student (paper 002 §4.3), its baselines (§4.4) and MAC counts.

Keras is imported by these modules, so import them explicitly (``rfedge.models.student``) rather
than from here: ``import rfedge.models`` stays cheap for code that only needs the names.
"""

MODEL_KINDS = ("student", "student-tcn", "cnn", "svm")

import os as _os

# TensorFlow's C++ runtime and the TFLite converter log dozens of INFO/WARNING lines per call;
# they bury our one-line-per-epoch progress. Users can still opt back in by setting it themselves.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
