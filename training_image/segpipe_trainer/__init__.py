"""The vision-transformer segmentation trainer that SageMaker runs (the local runner runs it as a process)."""
