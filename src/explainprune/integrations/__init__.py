"""Integrations with evaluation frameworks; each is imported only by the framework that loads it."""
