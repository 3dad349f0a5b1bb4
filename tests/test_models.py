import pytest
import torch

from benchmark.engine.models import MODELS, build_model, predict_logits


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_builds_and_classifies(name):
    size, channels = (32, 3) if name in {"resnet18", "vgg19"} else (28, 1)
    model = build_model(name, num_classes=7, in_channels=channels, image_size=size).eval()
    x = torch.randn(2, channels, size, size)
    logits = model(x)
    assert logits.shape == (2, 7)
    # the shared surface: features then head gives the logits
    torch.testing.assert_close(model.head(model.features(x)), logits)


def test_models_work_on_8x8_digits():
    model = build_model("small_cnn", num_classes=10, in_channels=1, image_size=8).eval()
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_unknown_model_lists_known_ones():
    with pytest.raises(KeyError, match="Did you mean resnet18"):
        build_model("resnet", num_classes=10, in_channels=3, image_size=32)


def test_predict_logits_batches_and_restores_mode():
    model = build_model("mlp", num_classes=10, in_channels=1, image_size=8).train()
    x = torch.randn(10, 1, 8, 8)
    out = predict_logits(model, x, batch_size=3)
    assert model.training
    torch.testing.assert_close(out, model.eval()(x))
