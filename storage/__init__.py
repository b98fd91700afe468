"""Durable state: SQLAlchemy models, the repository API and migrations."""
