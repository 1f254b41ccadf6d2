"""Finding the engine's connection info the way stock ``ipengine`` does.

Order: ``$IPP_CONNECTION_INFO`` (the Cluster API sets it), then ``--file`` / ``IPEngine.url_file``
(relative names are also looked up in the profile's ``security`` directory), then
``<profile>/security/ipcontroller[-<cluster_id>]-engine.json``. A missing file is waited for up
to ``IPEngine.wait_for_url_file`` seconds: batch systems start engines and controllers together.
"""

from __future__ import annotations

import json
import logging
import os
import time
from urllib.parse import urlparse

from .options import EngineOptions

log = logging.getLogger("oxipp.engine")


def engine_file_name(cluster_id: str) -> str:
    return f"ipcontroller-{cluster_id}-engine.json" if cluster_id else "ipcontroller-engine.json"


def profile_dir(opts: EngineOptions) -> str:
    from oxipp._oxipp import resolve_profile_dir

    return resolve_profile_dir(opts.profile, opts.profile_dir, opts.ipython_dir)


def url_file_path(opts: EngineOptions) -> str:
    security = os.path.join(profile_dir(opts), "security")
    if opts.url_file:
        path = os.path.expanduser(opts.url_file)
        if not os.path.isabs(path) and not os.path.exists(path):
            path = os.path.join(security, path)
        return path
    return os.path.join(security, engine_file_name(opts.cluster_id))


def _read_when_complete(path: str, deadline: float) -> dict:
    """Reads JSON, retrying briefly: a controller that writes in place can be caught mid-write."""
    while True:
        try:
            with open(path) as f:
                return json.load(f)
        except (ValueError, OSError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def load(opts: EngineOptions) -> dict:
    """The connection dict, with command-line overrides (location, registration url, key)."""
    env = opts.connection_info_env or os.environ.get("IPP_CONNECTION_INFO", "")
    if env:
        log.info("Loading connection info from $IPP_CONNECTION_INFO")
        info = json.loads(env)
    else:
        path = url_file_path(opts)
        if not os.path.exists(path) and opts.wait_for_url_file:
            log.warning("Connection file %r not found", path)
            log.warning("Waiting up to %.1f seconds for it to arrive.", opts.wait_for_url_file)
            deadline = time.monotonic() + opts.wait_for_url_file
            while not os.path.exists(path) and time.monotonic() < deadline:
                time.sleep(0.1)
        log.info("Loading connection file %r", path)
        info = _read_when_complete(path, time.monotonic() + 2)
    if opts.location:
        info["location"] = opts.location
    if opts.registration_url:
        url = urlparse(opts.registration_url)
        if url.scheme and url.hostname and url.port:
            info["interface"] = f"{url.scheme}://{url.hostname}"
            info["registration"] = url.port
    if opts.session_key is not None:
        info["key"] = opts.session_key
    if opts.signature_scheme:
        info["signature_scheme"] = opts.signature_scheme
    return info
