"""Adapters to the outside world. The only layer that imports boto3."""
