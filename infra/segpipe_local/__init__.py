"""The embedded local stack: moto server, HTTP gateway, event dispatcher, training-job runner."""
