"""aafcore: a small PyTorch library for reproducing *Adaptive Affinity Fields for Semantic
Segmentation* (Ke, Hwang, Liu, Yu; ECCV 2018).

Modules: :mod:`aafcore.losses` (affinity field, AAF, pixel-embedding and GAN losses) and
:mod:`aafcore.cli` (the ``aaf`` command).  Models, data, training and metrics follow.
"""

__version__ = "0.1.0"
