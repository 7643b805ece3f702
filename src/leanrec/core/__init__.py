"""The ground floor: formulas and helpers every other layer shares, importing nothing above.

* :mod:`.metrics` — ranking metrics from a target's rank (Recall/NDCG/MRR@K, AUC, coverage);
* :mod:`.bootstrap` — paired bootstrap intervals (a mean difference, a ratio of means);
* :mod:`.ranking` — top-K with ties broken by item id, and the softmax of P(i|u);
* :mod:`.threads` — the one thread budget for BLAS, OpenMP, torch and faiss;
* :mod:`.errors` — the exception types shared by every layer.

User histories and the decayed user vector live one floor up, in :mod:`leanrec.data.history`,
because they are built from a :class:`~leanrec.data.schema.Dataset`.
"""
