"""A joblib parallel backend that runs joblib's batches on an oxipp view."""

from __future__ import annotations

from joblib.parallel import AutoBatchingMixin, ParallelBackendBase


class IPythonParallelBackend(AutoBatchingMixin, ParallelBackendBase):
    """``view.register_joblib_backend()`` registers this; without a view it connects to (or
    starts) the default cluster."""

    def __init__(self, view=None, **kwargs):
        super().__init__(**kwargs)
        self._cluster = None
        self._cluster_owner = False
        self._client_owner = False
        if view is None:
            import oxipp

            self._client_owner = True
            try:
                cluster = oxipp.Cluster.from_file()
            except FileNotFoundError:
                cluster = self._cluster = oxipp.Cluster()
                self._cluster_owner = True
                cluster.start_cluster_sync()
            rc = cluster.connect_client_sync()
            rc.wait_for_engines(cluster.n or 1)
            view = rc.load_balanced_view()
            # joblib makes closures that plain pickle cannot ship
            try:
                import cloudpickle  # noqa: F401
            except ImportError:
                pass
            else:
                view.client[:].use_cloudpickle()
        self._view = view

    def effective_n_jobs(self, n_jobs):
        """A view runs len(view) jobs at a time."""
        return len(self._view)

    def terminate(self):
        if self._client_owner:
            self._view.client.close()
        if self._cluster_owner:
            self._cluster.stop_cluster_sync()

    def apply_async(self, func, callback=None):
        future = self._view.apply_async(func)
        if callback:
            future.add_done_callback(lambda f: callback(f.result()))
        return future
