"""Event glue: parse the event into a model, call one use case, return a model."""
