"""The sample generator's parts (see tools/make_sample.py): codes, one patient's resources, and the
two studies' scenarios."""
