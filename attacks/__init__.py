"""Metrics and attacks: pure functions over model outputs (``attacks.functional``), and thin Callbacks
that gather outputs once and call them."""

from attacks.accuracy import Accuracy, accuracy, accuracy_metrics
from attacks.base import AttackOptions, CellContext, MetricCallback, lazy
from attacks.destination import ForgetDestination
from attacks.errors import AttackOptionsError, ScoreUndefined
from attacks.fidelity import SimilarityFidelity, similarity_fidelity
from attacks.metrics import MetricInfo
from attacks.mia import MIAEfficacy, TVDistance
from attacks.mia_nn import MIANN
from attacks.outputs import Outputs, OutputSource
from attacks.probe_data import ProbeData, ProbeStore
from attacks.probes import ModelProbe
from attacks.relearning import RelearningProbe
from attacks.representation import RepresentationProbe
from attacks.rmia import RMIA
from attacks.ulira import ULiRA

__all__ = ["MIANN", "Accuracy", "AttackOptions", "AttackOptionsError", "CellContext", "ForgetDestination",
           "MIAEfficacy", "MetricCallback", "MetricInfo", "ModelProbe", "OutputSource", "Outputs", "ProbeData",
           "ProbeStore", "RMIA", "RelearningProbe", "RepresentationProbe", "ScoreUndefined",
           "SimilarityFidelity", "TVDistance", "ULiRA", "accuracy", "accuracy_metrics", "lazy", "similarity_fidelity"]
