"""make analyze: dataset statistics that tell the team how to train (see ``python -m analysis --help``)."""
