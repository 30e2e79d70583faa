"""Models: the bundled registry, resolving a name to a folder with its safety checks, chat templates and
system prompts, loading, and the checked safetensors cache of the bundled models."""
