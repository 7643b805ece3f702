"""leanrec: language-model recommendations at a measured fraction of the hardware cost."""

__version__ = "0.1.0"
