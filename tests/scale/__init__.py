"""Runners at scale: several `apply` processes sharing one PostgreSQL state and one bucket."""
