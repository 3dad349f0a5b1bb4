import pytest
import torch

from benchmark.engine.models import MODELS, build_model, model_layout, predict_logits


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


@pytest.mark.parametrize("name", ["small_cnn", "fast_resnet"])
def test_convolutional_models_train_channels_last_and_say_so_in_their_keys(name):
    model = build_model(name, num_classes=10, in_channels=3, image_size=16)
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert not all(w.is_contiguous() for w in convs)  # really restrided, not trivially both
    assert model_layout(name) == {"memory_format": "channels_last"}
    x = torch.randn(4, 3, 16, 16)
    model.eval()
    plain = build_model(name, num_classes=10, in_channels=3, image_size=16).eval()
    plain.load_state_dict(model.state_dict())
    assert plain.body[0].weight.is_contiguous(memory_format=torch.channels_last)  # the layout survives loading
    # the same function of the same weights in either layout, to float rounding
    contiguous = build_model(name, num_classes=10, in_channels=3, image_size=16).eval()
    contiguous.load_state_dict(model.state_dict())
    contiguous = contiguous.to(memory_format=torch.contiguous_format)
    contiguous.channels_last = False
    torch.testing.assert_close(model(x), contiguous(x), rtol=1e-4, atol=1e-5)


def test_the_default_layout_leaves_cache_keys_as_they_were():
    assert model_layout("mlp") == {} and model_layout("resnet18") == {}


def test_a_channels_last_model_stacks_under_vmap():
    from benchmark.engine.preset import TrainRecipe
    from benchmark.engine.stacked import StackedClassifier

    models = [build_model("small_cnn", num_classes=10, in_channels=1, image_size=8) for _ in range(3)]
    stack = StackedClassifier(models, TrainRecipe())
    assert stack(torch.randn(3, 5, 1, 8, 8)).shape == (3, 5, 10)
