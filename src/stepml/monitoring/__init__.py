"""Model monitoring: SageMaker Model Monitor's data-quality analysis of captured endpoint data.

``analysis`` reads a baseline (statistics.json and constraints.json, as the Glue job writes
them) and a batch of captured records and writes the built-in analyzer's outputs; ``report``
draws them for a person. Pure Python: the local cloud and the CLI both use it.
"""
