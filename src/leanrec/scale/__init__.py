"""Batch jobs on Dask distributed: encode a catalogue, score every user, over Parquet partitions.

Why Dask: it runs the same Python functions on a laptop (a :class:`~distributed.LocalCluster`
on 127.0.0.1) and on a cluster (``--scheduler ADDRESS``), retries failed tasks, and needs no
JVM. Each job is a list of partitions; one task per partition writes one output file
atomically, so a rerun skips what is already written and a crash loses one partition at most.
Without a client the same partition function runs sequentially in-process: that is the
single-process reference the distributed results are tested against (bitwise equal).

* :func:`connect` -- a client for a scheduler address, or a local cluster it closes after;
* :func:`encode_catalogue` -- item vectors (+ an optional compressed copy) per partition;
* :func:`recommend_all` -- top-k for every user in an event log, per user partition;
* :func:`build_index_shards` / :func:`search_shards` -- one index per range of item partitions;
* :func:`load_vectors` -- read an :func:`encode_catalogue` output back as one array.
"""

from __future__ import annotations

from .cluster import SchedulerUnreachableError, connect
from .common import ConfigMismatchError, PartitionFailedError
from .encode import EncoderSpec, encode_catalogue, load_vectors
from .recommend_all import load_recommendations, recommend_all
from .shards import build_index_shards, search_shards

__all__ = [
    "ConfigMismatchError",
    "EncoderSpec",
    "PartitionFailedError",
    "SchedulerUnreachableError",
    "build_index_shards",
    "connect",
    "encode_catalogue",
    "load_recommendations",
    "load_vectors",
    "recommend_all",
    "search_shards",
]
