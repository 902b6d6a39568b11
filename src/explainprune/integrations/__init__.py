"""Integrations with evaluation and serving frameworks (lmms_eval/, vllm/); each is imported only by the framework that loads it."""
