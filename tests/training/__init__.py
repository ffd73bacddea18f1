"""Tests of grubench.training (a package, so test module names may repeat elsewhere)."""
