"""Spec files: loading YAML with positions, validating against each kind's schema, discovery.

Importing this package is cheap (PyYAML and the standard library); jsonschema is loaded only
when a spec is validated.
"""

from mlopsctl.spec.discover import find_specs
from mlopsctl.spec.loader import LoadedYaml, Surprise, load_yaml
from mlopsctl.spec.validate import (
    API_VERSION,
    SPEC_KINDS,
    load_spec,
    schema_for,
    validate_file,
    validate_paths,
)

__all__ = [
    "API_VERSION",
    "SPEC_KINDS",
    "LoadedYaml",
    "Surprise",
    "find_specs",
    "load_spec",
    "load_yaml",
    "schema_for",
    "validate_file",
    "validate_paths",
]
