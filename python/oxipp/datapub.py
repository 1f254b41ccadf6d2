"""``publish_data`` for tasks on oxipp engines (stock's ``ipyparallel.datapub`` equivalent)."""

from .engine.datapub import publish_data

__all__ = ["publish_data"]
