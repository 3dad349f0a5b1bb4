"""Metrics and attacks: pure functions over model outputs (``attacks.functional``), and thin Callbacks
that gather outputs once and call them."""

from attacks.accuracy import Accuracy, accuracy, accuracy_metrics
from attacks.base import AttackOptions, CellContext, MetricCallback, lazy
from attacks.destination import ForgetDestination
from attacks.fidelity import SimilarityFidelity, similarity_fidelity
from attacks.metrics import METRICS, MetricInfo
from attacks.mia import MIAEfficacy, TVDistance
from attacks.mia_nn import MIANN
from attacks.ulira import ULiRA

ALL_CALLBACKS = (Accuracy, MIAEfficacy, TVDistance, MIANN, ULiRA, SimilarityFidelity, ForgetDestination)

__all__ = ["ALL_CALLBACKS", "METRICS", "MIANN", "Accuracy", "AttackOptions", "CellContext", "ForgetDestination",
           "MIAEfficacy", "MetricCallback", "MetricInfo", "SimilarityFidelity", "TVDistance", "ULiRA", "accuracy",
           "accuracy_metrics", "lazy", "similarity_fidelity"]
