"""grubench: how fast, how lean and how exact is a GRU (and an LSTM) on this machine."""
__version__ = "0.1.0"
