"""Reproducibility harness for deep metric learning (DM2 and ABE).

Data flows one way: recipes/ + tables/ -> run specs -> runner -> training core
-> MLflow -> report. See README.md.
"""

__version__ = "0.1.0"
