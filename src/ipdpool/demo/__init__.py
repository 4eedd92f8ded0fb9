"""Synthetic demo trials with known true effects (see resources/demo/README.md)."""
