"""An agents package with a YAML agent (``planner.yaml``, the README's example) beside the Python ``assistant``."""
