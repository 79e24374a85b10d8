"""Engines beyond one machine: a Ray cluster as a runner backend (`run --backend ray`) and the
Kubeflow Pipelines v2 compiler (`export kfp`). Ray and kfp are imported inside the functions
that need them, so importing this package costs nothing."""
