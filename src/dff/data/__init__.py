"""Datasets, converters, sampling and the image transforms shared by training and test."""
