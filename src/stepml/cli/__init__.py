"""The ``stepml`` command."""
