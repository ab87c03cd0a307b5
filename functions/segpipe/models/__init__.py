"""Pydantic contracts: the wire formats between the API, the Lambdas, S3, DynamoDB and the trainer."""
