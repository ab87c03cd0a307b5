"""segpipe: serverless training of vision-transformer segmentation models."""

__version__ = "0.1.0"
