"""Exception types shared by every layer.

``NotFittedError`` is the one "call fit/build first" error of the library: models,
encoders, codecs and indexes all raise it. It subclasses scikit-learn's (so code written
against the estimator contract catches it as usual: a ``ValueError`` and an
``AttributeError``) and ``RuntimeError`` (what the models raised before it existed).
"""

from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SklearnNotFitted

__all__ = ["NotFittedError"]


class NotFittedError(_SklearnNotFitted, RuntimeError):
    """An estimator, encoder, codec or index was used before ``fit``/``build``."""
