"""The REST API: a FastAPI app whose routes are thin doors onto the core (`tasks/`, `coverage`)."""
