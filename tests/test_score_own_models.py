"""The scoring API on models the suite never saw: plain PyTorch loops (no Lightning, none of the suite's training
code) train every role on scikit-learn's digits, and :func:`score_outputs` scores them. A model that remembers the
forget class is flagged by every attack; a further retrained model handed in as the "unlearned" one is not."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from benchmark.engine.callbacks import CELL_METRICS, declared_metrics
from benchmark.engine.score import ScoreInputs, model_outputs, score_outputs

FORGET = 3
M, S = 3, 2  # references; in-shadows (the null needs S + 1 further retrained models)


def split_digits() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """D_f, D_r, T_f, T_r of digits with class 3 forgotten: a fixed 80/20 split, pixels scaled to [0, 1]."""
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, test = order[:1400], order[1400:]
    parts = {}
    for name, idx in (("D", train), ("T", test)):
        forget = y[idx] == FORGET
        parts[f"{name}_f"] = (x[idx][forget], y[idx][forget])
        parts[f"{name}_r"] = (x[idx][~forget], y[idx][~forget])
    return parts


def train(x: torch.Tensor, y: torch.Tensor, seed: int, *, model: nn.Module | None = None, epochs: int = 40,
          lr: float = 0.1) -> nn.Module:
    """A plain SGD loop over shuffled mini-batches (a new MLP of ``seed`` unless ``model`` is given)."""
    generator = torch.Generator().manual_seed(seed)
    if model is None:
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimiser = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for _ in range(epochs):
        for batch in torch.randperm(len(y), generator=generator).split(64):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimiser.step()
    return model.eval()


def unlearn(model: nn.Module, data, seed: int) -> nn.Module:
    """"Unlearning" by the user's own rule: relabel D_f to the model's best retained class and fine-tune on it
    with D_r (a random-label-like method, written without the suite)."""
    x_f, _ = data["D_f"]
    with torch.no_grad():
        logits = model(x_f)
        logits[:, FORGET] = -torch.inf
        relabelled = logits.argmax(1)
    x = torch.cat([data["D_r"][0], x_f])
    y = torch.cat([data["D_r"][1], relabelled])
    return train(x, y, seed, model=model.train(), epochs=5, lr=0.02)


@pytest.fixture(scope="module")
def roles():
    data = split_digits()
    full = (torch.cat([data["D_r"][0], data["D_f"][0]]), torch.cat([data["D_r"][1], data["D_f"][1]]))
    run = lambda model: model_outputs(model, data)  # noqa: E731
    originals = [train(*full, seed) for seed in range(S + 1)]
    retrained = [train(*data["D_r"], 100 + seed) for seed in range(1 + M + S + 2)]
    return {"data": data, "original": run(originals[0]),
            "unlearned": run(unlearn(originals[0], data, 7)),
            "shadows": [run(unlearn(m, data, 8 + i)) for i, m in enumerate(originals[1:])],
            "oracle": run(retrained[0]), "references": [run(m) for m in retrained[1:M + 1]],
            "null": [run(m) for m in retrained[M + 1:M + 1 + S + 1]], "spare": run(retrained[-1])}


def scored(roles, target):
    return score_outputs(ScoreInputs(target=target, oracle=roles["oracle"], references=roles["references"],
                                     shadows=roles["shadows"], retrained=roles["null"], forget_classes=[FORGET]))


def test_every_output_score_is_computed_for_models_from_a_plain_loop(roles):
    scores = scored(roles, roles["unlearned"])
    from attacks.probes import ModelProbe
    from benchmark.engine.callbacks import CALLBACKS
    # what needs more than outputs (README, "Score your own unlearning run"): timings, the probes (they run the
    # models) and online RMIA (it reads the in-shadows as trained, before unlearning); those are absent, not faked
    online = {m.key for m in CALLBACKS["rmia"].metrics if m.key.startswith("RMIA_online")}
    needs_models = {m.key for m in CELL_METRICS} | online | {
        m.key for c in CALLBACKS.values() if issubclass(c, ModelProbe) for m in c.metrics}
    expected = {m.key for m in declared_metrics()} - needs_models
    assert expected <= scores.metrics.keys() and expected <= scores.oracle.keys()
    assert online and not online & scores.metrics.keys()
    assert scores.metrics["UA"] >= 90.0  # the user's rule forgot the class


def test_a_model_that_remembers_the_class_is_flagged_and_a_retrained_one_is_not(roles):
    remembers, retrained = scored(roles, roles["original"]).metrics, scored(roles, roles["spare"]).metrics
    assert remembers["UA"] < 10.0 and retrained["UA"] == 100.0
    # U-LiRA: judged against its null sd (about 8 points with M = 3, S = 2). The original sits well above the null's
    # 50 (its in-shadows are the user's unlearned models, so it is an outlier to both sides, not a perfect match to
    # one); a retrained model is exchangeable with the references and stays within the null's spread
    sd = remembers["ULiRA_null_sd"]
    assert remembers["ULiRA"] > 50.0 + 2 * sd and abs(retrained["ULiRA"] - 50.0) < 2.5 * sd
    assert remembers["MIA_NN"] > retrained["MIA_NN_null_mean"] + 3 * retrained["MIA_NN_null_sd"]
    assert abs(retrained["MIA_NN"] - retrained["MIA_NN_null_mean"]) < 4 * retrained["MIA_NN_null_sd"] + 5.0
    assert remembers["RMIA_AUC"] > 0.9 and retrained["RMIA_AUC"] == pytest.approx(retrained["RMIA_AUC_null_mean"],
                                                                                  abs=0.1)
