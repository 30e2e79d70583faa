"""The workshop: the Arena's blind votes, an OpenAI-compatible endpoint (``clo serve``) and the LLM judge."""
