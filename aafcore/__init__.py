"""aafcore: a small PyTorch library for reproducing *Adaptive Affinity Fields for Semantic
Segmentation* (Ke, Hwang, Liu, Yu; ECCV 2018).

Modules: :mod:`aafcore.losses` (affinity field, AAF, pixel-embedding and GAN losses),
:mod:`aafcore.data` (the synthetic benchmark, VOC-layout reader, augmentation,
``build_dataset``), :mod:`aafcore.voc` (PASCAL VOC 2012 + SBD), :mod:`aafcore.cityscapes`
(Cityscapes and GTA5),
:mod:`aafcore.models` (FCN and PSPNet on dilated ResNets), :mod:`aafcore.train` (one trainer
for every method), :mod:`aafcore.evaluate` and :mod:`aafcore.metrics`, and :mod:`aafcore.cli`
(the ``aaf`` command).
"""

__version__ = "0.1.0"
