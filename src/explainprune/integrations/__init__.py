"""Integrations with serving runtimes; each subpackage imports its runtime only when that runtime loads it."""
