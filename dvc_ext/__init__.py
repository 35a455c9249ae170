"""dvc-ext: learned video compression (DVC-style P-frame codec with plug-ins).

Importing the package does nothing but define names; models, configs and
weights load only when a task asks for them.
"""

__version__ = "0.1.0"
