"""Attacks on real offline data: every score of a cell, neighbour classes, and the paper's claims."""

from dataclasses import replace

import pytest
import torch

from attacks.functional import neighbour_classes
from benchmark.engine.bank import ModelBank
from benchmark.engine.callbacks import declared_metrics
from benchmark.engine.cell import build_datamodule
from benchmark.engine.grid import Display, RunPaths, run_benchmark
from benchmark.engine.outputs import OutputsProvider
from benchmark.engine.preset import Bank, load_preset

EVERY_SCORE = {m.key for m in declared_metrics()}


@pytest.fixture(scope="module")
def small_bank_preset():
    return replace(load_preset("digits"), bank=Bank(references=3, shadows=2))  # shared with test_cli's bank


def test_neighbour_classes_are_where_references_send_forget_samples(small_bank_preset, cache):
    for forget in (3,):
        dm = build_datamodule(small_bank_preset, seed=0, forget_classes=(forget,))
        refs = ModelBank(small_bank_preset, dm, cache).reference_outputs(OutputsProvider(dm, cache))
        predicted = torch.cat([r.logits["D_f"].argmax(1) for r in refs])
        counts = torch.bincount(predicted, minlength=10).double()
        counts[forget] = -1
        most_predicted = counts.topk(3).indices.tolist()
        found = neighbour_classes([r.probs("D_f") for r in refs], (forget,), k=3)
        assert found[0] == most_predicted[0]
        assert set(found) == set(most_predicted)


def test_a_cell_records_every_score_for_method_and_oracle(small_bank_preset, cache, tmp_path):
    summary = run_benchmark(small_bank_preset, ["original", "retrain"], forget_classes=[(3,)], seeds=[0],
                            paths=RunPaths(out=tmp_path, cache=cache.root), display=Display(progress=False))
    original, retrain = summary.rows
    for row in summary.rows:
        assert row["status"] == "ok"
        # every declared score is written, and nothing undeclared is
        assert row["metrics"].keys() == EVERY_SCORE == row["oracle"].keys()
        assert row["bank"] == {"references": 3, "shadows": 2}
        # each attack's null is in every row: the oracle's MIA-NN is the null mean, with the null's spread beside it
        for part in ("metrics", "oracle"):
            assert row[part]["MIA_NN_null_sd"] > 0 and row[part]["ULiRA_null_sd"] > 0
        assert row["oracle"]["MIA_NN"] == row["metrics"]["MIA_NN_null_mean"] == row["oracle"]["MIA_NN_null_mean"]
    # the original is flagged by every attack; retraining (another seed) is not
    assert original["metrics"]["MIA_NN"] > original["metrics"]["MIA_NN_null_mean"] + 3 * original["metrics"][
        "MIA_NN_null_sd"]
    assert original["metrics"]["ULiRA"] > 90 and original["metrics"]["TV"] > 0.8
    assert abs(original["oracle"]["ULiRA"] - 50) < 15  # the leave-one-model-out noise floor (measured 43.1)
    assert retrain["metrics"]["TV"] < 0.3 and abs(retrain["metrics"]["ULiRA"] - 50) < 15
    assert original["oracle"]["TV"] == 0.0


@pytest.mark.slow
def test_paper_claims_on_mnist5k(tmp_path, cache):
    """Issue 4's claims with the preset's full bank (M = S = 8), forget class 3, seed 0.

    Measured on 2026-11-23 (`bench run --preset mnist5k --methods original,retrain,ft,rl,rwft
    --forget-classes 3`): original MIA-NN 97.0 / U-LiRA 100 against the oracle's 54.5 / 68.2; rl MIA-NN
    92.0, rwft 75.5 (both U-LiRA ~100). The oracle's U-LiRA of 68.2 is NOT near 50: it compares one
    further retrained model with one oracle, and a single model's overall confidence shifts every
    per-example score the same way, so a one-cell oracle U-LiRA is a two-sample draw (digits gave
    41.2). It is reported, not asserted; the leaderboard's mean over cells is the noise floor to quote.
    """
    preset = load_preset("mnist5k", tuned=False)  # the claim was measured with the hand-set values
    summary = run_benchmark(preset, ["original", "rl", "rwft"], forget_classes=[(3,)], seeds=[0],
                            paths=RunPaths(out=tmp_path, cache=cache.root), display=Display(progress=False))
    rows = {r["method"]: r for r in summary.rows}
    oracle = rows["original"]["oracle"]
    assert rows["original"]["metrics"]["MIA_NN"] > oracle["MIA_NN"] + 15
    assert rows["original"]["metrics"]["ULiRA"] > 90 and abs(oracle["ULiRA"] - 50) < 3 * oracle["ULiRA_null_sd"]
    assert rows["rl"]["metrics"]["MIA_NN"] > oracle["MIA_NN"] + 15  # random labels leak through the neighbours
    gap = {m: abs(rows[m]["metrics"]["MIA_NN"] - oracle["MIA_NN_null_mean"]) for m in ("rl", "rwft")}
    assert gap["rl"] > gap["rwft"]  # reweighting the original's own distribution leaks less (the paper's claim)
    assert all(r["status"] == "ok" for r in rows.values())


def test_each_method_of_a_cell_is_scored_on_its_own_model(digits_dm):
    """The cell's outputs provider outlives every method's module, and a freed module's ``id()`` can be
    handed to the next one: the memo key must name the method, or the next method is scored on the
    previous one's outputs (it happened once: a digits row of svd held neggrad_plus's scores)."""
    from types import SimpleNamespace

    from attacks import CellContext
    from benchmark.engine.models import build_model

    provider = OutputsProvider(digits_dm)
    module = SimpleNamespace(model=None)  # one object, as if the second method got the first one's id
    seen = []
    for seed, key in ((1, "method-a"), (2, "method-b")):
        torch.manual_seed(seed)
        module.model = build_model("mlp", num_classes=10, in_channels=1, image_size=8)
        context = CellContext(outputs=provider, oracle=None, oracle_meta={}, method_key=None)
        seen.append(context.method_outputs(module).logits["D_f"])
        assert torch.equal(seen[-1], provider.of(module.model, f"check {key}").logits["D_f"])
    assert not torch.equal(seen[0], seen[1])
