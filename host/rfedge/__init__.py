"""rfedge: embedded deployment kit for RF gesture sensing."""

__version__ = "0.1.0"
