"""mlopsctl: a serverless MLOps toolchain (git + an object store + Docker)."""

__version__ = "0.1.0"
