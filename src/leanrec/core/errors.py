"""Exception types shared by every layer.

``NotFittedError`` is the one "call fit/build first" error of the library: models,
encoders, codecs and indexes all raise it. It is a ``ValueError`` and an ``AttributeError``,
as scikit-learn's is (so code written against the estimator contract catches it as usual),
and a ``RuntimeError`` (what the models raised before it existed). It does not subclass
scikit-learn's: importing scikit-learn costs ~2 s, which the vector layer never pays.
"""

from __future__ import annotations

__all__ = ["NotFittedError"]


class NotFittedError(ValueError, AttributeError, RuntimeError):
    """An estimator, encoder, codec or index was used before ``fit``/``build``."""
