"""Integrations with evaluation and serving frameworks; each is imported only by the framework that loads it."""
