"""Recommenders with the scikit-learn estimator contract (see ``base.Recommender``)."""

from .base import Recommendation, Recommender
from .live import Decomposition
from .content import ContentRecommender
from .ease import EASE
from .hybrid import Hybrid
from .popular import MostPopular

__all__ = ["Decomposition", "Recommendation", "Recommender", "ContentRecommender", "EASE", "Hybrid", "MostPopular"]
