"""Datasets: the IDX file format and fetching/splitting MNIST-style datasets."""
