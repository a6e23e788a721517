"""drivestack: the closed-loop pipeline and the `drivestack` command line."""

__version__ = "0.1.0"
