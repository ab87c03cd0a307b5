"""Use cases: pure functions of models and collaborators; no boto3, no os.environ."""
