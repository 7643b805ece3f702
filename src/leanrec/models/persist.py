"""Model folders: what a fitted recommender leaves on disk for the service to load.

A folder holds ``leanrec_model.json`` (kind, hyper-parameters, the text encoder, the
training set it saw) and the arrays its scorer needs to score *live* histories with the
same formulas the library evaluated (each kind writes its own: ``item_ids.json`` and
``popularity.npy`` always; ``ease_B.npy``; ``seqnet.pt``, read with
``torch.load(weights_only=True)``; a learned hybrid's ``components/c<k>/``). Item vectors
are *not* saved: the service keeps them per encoder in its store, so a model whose encoder
the store already used costs no re-encoding, and new items get vectors the moment they
arrive. Only models built from named encoders can be saved, because the service must
rebuild the same encoder from the name.

This module is the stable entry point; the work is the registry's
(:mod:`leanrec.models.registry`) and each scorer's.
"""

from __future__ import annotations

from .live import MODEL_FILE
from .registry import load_scorer as load_model_folder
from .registry import save_model
from .seqscorer import SEQNET_FILE

__all__ = ["MODEL_FILE", "SEQNET_FILE", "load_model_folder", "save_model"]
