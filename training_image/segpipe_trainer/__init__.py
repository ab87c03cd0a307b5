"""The vision-transformer segmentation trainer that SageMaker runs (and the local runner runs as a process)."""
