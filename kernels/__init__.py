"""The implementations grubench measures, one module per backend, all under one contract
(:mod:`grubench.kernels.contract`). Installed as ``grubench.kernels``."""
