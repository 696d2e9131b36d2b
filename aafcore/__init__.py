"""aafcore: a small PyTorch library for reproducing *Adaptive Affinity Fields for Semantic
Segmentation* (Ke, Hwang, Liu, Yu; ECCV 2018).

Layers (each imports only from the ones below it; ``tests/test_architecture.py`` checks it):

* entry: :mod:`aafcore.cli` (the ``aaf`` command), :mod:`aafcore.reproduce` (every notebook and the book);
* study: :mod:`aafcore.evaluate` (a finished run on disk), :mod:`aafcore.report` (tables, gains, the
  claims ledger, figures);
* training: :mod:`aafcore.train` (the trainer and the loop), :mod:`aafcore.config` (``TrainConfig``,
  the profiles, run names and hashes), :mod:`aafcore.objectives` (one class per method),
  :mod:`aafcore.distributed` (several processes);
* foundations: :mod:`aafcore.inference` (multi-scale + flip, sliding windows, ``evaluate_model``),
  :mod:`aafcore.datasets` (the synthetic benchmark, VOC + SBD, Cityscapes, GTA5, augmentation,
  ``build_dataset``), :mod:`aafcore.testing` (fixture writers), :mod:`aafcore.runs` (atomic writes,
  hashes, provenance), :mod:`aafcore.losses` (affinity field, AAF, pixel-embedding and GAN losses,
  on the pair sums of :mod:`aafcore.pairs`), :mod:`aafcore.models` (FCN and PSPNet on dilated
  ResNets), :mod:`aafcore.metrics`, :mod:`aafcore.crf`, :mod:`aafcore.tutorial`.

:mod:`aafcore.data`, :mod:`aafcore.voc` and :mod:`aafcore.cityscapes` are compatibility aliases of
:mod:`aafcore.datasets` and :mod:`aafcore.testing`.
"""

__version__ = "0.1.0"
