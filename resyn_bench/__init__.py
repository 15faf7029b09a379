"""resyn-bench: evaluation and benchmarking for speech resynthesis from discrete units.

Importing the package is cheap: no torch, no model code, no network. Heavy modules are
imported lazily by the registry when a system or metric is actually used.
"""
__version__ = "0.1.0"
