"""mmlbench: benchmark loss functions for collaborative-filtering recommenders."""

__version__ = "0.1.0"
