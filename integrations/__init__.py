"""autolog's integrations: one module per ML library, each one `Integration` class.

Installed as `autolog.integrations` (see pyproject.toml); never import this folder
by its own name. Each module imports its library only inside `patch()`, which the
engine calls when the library is imported.
"""
