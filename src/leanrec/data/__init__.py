"""Data: the typed dataset model, file readers with validation, sources and split protocols."""

from .io import (DataValidationError, EventColumns, ItemColumns, ValidationIssue, ValidationReport,
                 load_dataset, read_events, read_items)
from .schema import Dataset, Events, Items
from .split import Split, Targets, cold_start_split, make_split, temporal_leave_one_out


def load(name: str) -> Dataset:
    """A named, verified data set (fetched and cached on first use): ``"ml-100k"``."""
    if name == "ml-100k":
        from .sources.movielens import load_ml100k

        return load_ml100k()
    raise ValueError(f"unknown data set {name!r}; available: ml-100k (or use load_dataset for your files)")


__all__ = ["DataValidationError", "EventColumns", "ItemColumns", "ValidationIssue", "ValidationReport",
           "load_dataset", "read_events", "read_items", "Dataset", "Events", "Items", "Split", "Targets",
           "cold_start_split", "make_split", "temporal_leave_one_out", "load"]
