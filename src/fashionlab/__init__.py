"""fashionlab: train, evaluate and serve fashion image-recognition models."""
import time as _time

STARTED = _time.perf_counter()  # the CLI's time budget counts from here (imports included)
__version__ = "0.1.0"
