"""Benchmarks: ours (kernels.*) vs the eager formulas vs torch.compile of the formulas, against
the device's copy bandwidth, plus end-to-end training steps. Run ``python -m bench --help``."""
