"""grubench train: a recurrent classifier trained with grubench's own kernels (GRU vs LSTM)."""
