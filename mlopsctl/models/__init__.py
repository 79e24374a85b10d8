"""Model artifacts (artifact.py) and data profiles (profile.py); import the submodules directly."""
