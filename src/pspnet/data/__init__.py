"""Datasets, their class names and palettes, preparation, checks and augmentation."""
