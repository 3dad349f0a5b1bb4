import pytest
import torch
from sklearn.metrics import accuracy_score

from attacks import accuracy, accuracy_metrics
from attacks.outputs import Outputs


def test_accuracy_matches_scikit_learn():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(500, 10, generator=g), torch.randint(0, 10, (500,), generator=g)
    expected = 100 * accuracy_score(labels.numpy(), logits.argmax(1).numpy())
    assert accuracy(logits, labels) == pytest.approx(expected, abs=1e-4)


def test_accuracy_metrics_known_answer():
    eye = torch.eye(3) * 5
    # D_f: 1 of 4 right -> UA 75; T_f: 2 of 2 -> 100; D_r: 3 of 3 -> 100; T_r: 0 of 2 -> 0
    outputs = Outputs(
        logits={"D_f": eye[[0, 1, 1, 1]], "T_f": eye[[0, 0]], "D_r": eye[[1, 2, 2]], "T_r": eye[[0, 0]], "V": eye},
        labels={"D_f": torch.tensor([0, 0, 0, 0]), "T_f": torch.tensor([0, 0]), "D_r": torch.tensor([1, 2, 2]),
                "T_r": torch.tensor([1, 2]), "V": torch.tensor([0, 1, 2])},
    )
    assert accuracy_metrics(outputs) == pytest.approx({"UA": 75.0, "FTA": 100.0, "RA": 100.0, "TA": 0.0})
