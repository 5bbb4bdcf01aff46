"""The REST API, versioned under /api/v1, documented as OpenAPI by flask-smorest."""
