"""Recommenders with the scikit-learn estimator contract (see ``base.Recommender``)."""

from .base import History, Recommendation, Recommender, softmax, top_k
from .content import ContentRecommender, decay_weights
from .ease import EASE
from .hybrid import Hybrid
from .popular import MostPopular

__all__ = ["History", "Recommendation", "Recommender", "softmax", "top_k", "ContentRecommender",
           "decay_weights", "EASE", "Hybrid", "MostPopular"]
