"""raydm: hyperparameter search for unsupervised domain adaptation on Ray Tune."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("raydm")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
