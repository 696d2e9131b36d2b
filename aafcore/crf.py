"""Dense-CRF post-processing (Krähenbühl & Koltun 2011), the paper's CRF baseline (Section 4.3).

The paper follows DeepLab [6]: the network's softmax probabilities are the unary term
``ψ_u(x_i) = -log P(x_i)`` and two Potts-compatible Gaussian kernels over the *un-normalised*
RGB image form the pairwise term

    ψ_p(x_i, x_j) = [x_i ≠ x_j] · ( bi_w · exp(-|p_i - p_j|² / 2 bi_xy_std² - |I_i - I_j|² / 2 bi_rgb_std²)
                                   + pos_w · exp(-|p_i - p_j|² / 2 pos_xy_std²) )

with the paper's parameters bi_w = 1, bi_xy_std = 40, bi_rgb_std = 3, pos_w = 1, pos_xy_std = 1.
The spatial stds are in pixels of Cityscapes' 1024 x 2048 images; the study (protocol/study.yaml,
``crf``) scales them to its 384-px images and picks ``bi_w`` / ``bi_xy_std`` on a small grid on
the tuning split (:func:`aafcore.evaluate.crf_grid`), as DeepLab tuned its CRF.
Mean-field inference runs :data:`CRF_ITERATIONS` = 10 iterations (DeepLab's default; the paper
does not state a number).  The solver is ``pydensecrf2`` (install ``aafcore[crf]``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

__all__ = ["CRFParams", "CRF_ITERATIONS", "crf_params", "dense_crf", "crf_available"]

CRF_ITERATIONS = 10


@dataclass(frozen=True)
class CRFParams:
    """Dense-CRF kernel parameters; the defaults are the paper's (Section 4.3)."""

    bi_w: float = 1.0
    bi_xy_std: float = 40.0
    bi_rgb_std: float = 3.0
    pos_w: float = 1.0
    pos_xy_std: float = 1.0
    iterations: int = CRF_ITERATIONS

    def as_dict(self) -> dict:
        return asdict(self)


def crf_params(option) -> CRFParams | None:
    """The CRF of an evaluation option: ``False``/``None`` -> no CRF, ``True`` -> the paper's
    parameters, a mapping -> those fields over the paper's (e.g. the study's tuned
    ``{"bi_w": 3.0, "bi_xy_std": 15.0}``); anything else is a one-line ``ValueError``."""
    if option is None or option is False:
        return None
    if option is True:
        return CRFParams()
    if isinstance(option, dict):
        fields = set(CRFParams.__dataclass_fields__)
        unknown = sorted(set(option) - fields)
        if unknown:
            raise ValueError(f"unknown CRF parameter {unknown[0]!r}; choose from {', '.join(sorted(fields))}")
        bad = [k for k, v in option.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0]
        if bad:
            raise ValueError(f"CRF parameter {bad[0]} must be a positive number, got {option[bad[0]]!r}")
        return CRFParams(**{k: (int(v) if k == "iterations" else float(v)) for k, v in option.items()})
    raise ValueError(f"crf must be true, false or a mapping of CRF parameters, got {option!r}")


def _densecrf():
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError:
        raise ImportError("dense CRF needs the pydensecrf2 package: pip install 'aafcore[crf]' "
                          "(or pip install pydensecrf2; it compiles with a C++ compiler)") from None
    return dcrf


def crf_available() -> bool:
    """Whether ``pydensecrf2`` can be imported."""
    try:
        _densecrf()
    except ImportError:
        return False
    return True


def dense_crf(image, probs, params: CRFParams = CRFParams()) -> np.ndarray:
    """Refine one image's class probabilities with a fully connected CRF.

    ``image``: uint8 ``[H, W, 3]`` RGB (not normalised); ``probs``: float ``[C, H, W]`` softmax
    probabilities (numpy or torch).  Returns the CRF's marginals, float32 ``[C, H, W]``; take
    ``argmax(0)`` for the labels.
    """
    dcrf = _densecrf()
    image = np.asarray(image)
    probs = probs.detach().cpu().numpy() if isinstance(probs, torch.Tensor) else np.asarray(probs)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"dense_crf: image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    if probs.ndim != 3 or probs.shape[1:] != image.shape[:2]:
        raise ValueError(f"dense_crf: probabilities {probs.shape} do not match the image {image.shape[:2]}")
    num_classes, h, w = probs.shape
    crf = dcrf.DenseCRF2D(w, h, num_classes)
    unary = -np.log(np.clip(probs.astype(np.float32), 1e-8, 1.0)).reshape(num_classes, -1)
    crf.setUnaryEnergy(np.ascontiguousarray(unary))
    crf.addPairwiseGaussian(sxy=params.pos_xy_std, compat=params.pos_w)
    crf.addPairwiseBilateral(sxy=params.bi_xy_std, srgb=params.bi_rgb_std,
                             rgbim=np.ascontiguousarray(image), compat=params.bi_w)
    q = crf.inference(params.iterations)
    return np.asarray(q, dtype=np.float32).reshape(num_classes, h, w)
