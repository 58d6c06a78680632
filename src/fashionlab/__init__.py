"""fashionlab: train, evaluate and serve fashion image-recognition models."""
__version__ = "0.1.0"
