"""Fused kernels of the AAF pair sums (:mod:`aafcore.pairs`).

* :mod:`aafcore.kernels.cpu`    -- backend ``"cpp"``: a C++ kernel (``pairkl.cpp``) compiled on
  first use with the system's C++ compiler and called through ctypes, one image per thread.
It computes exactly what :class:`aafcore.pairs._PairKL` (backend ``"torch"``) computes, from
the same flat padded grid; ``tests/test_kernels.py`` checks them against the float64 oracle.
"""

BACKENDS = ("auto", "torch", "cpp")
