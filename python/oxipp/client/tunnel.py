"""SSH tunnels to a controller (``Client(sshserver=..., sshkey=..., password=...)``).

Stock ipyparallel tunnels each socket through ``zmq.ssh.tunnel`` (one ``ssh -L`` per socket,
kept alive by a remote ``sleep``). Here one SSH connection forwards every controller port a
client uses, from free loopback ports on this machine, for as long as the client is open; the
client's connection info is rewritten to those local ports before the Rust core connects, so
the core knows nothing of SSH.

Two transports, chosen like stock (``paramiko=None``: OpenSSH, except on Windows or when no
``ssh`` is on PATH; ``paramiko=True``/``False`` forces one):

* :class:`SshTunnel`, one OpenSSH process. A password, when one is needed, reaches ssh
  through ``SSH_ASKPASS`` (ssh never sees a terminal), never on a command line.
  ``OXIPP_SSH_ARGS`` adds options to the ssh command (``-F config``, ``-J jumphost``, ``-o …``).
* ``ParamikoTunnel`` (paramiko_tunnel.py), one paramiko connection in this process; that
  module, and paramiko, are imported only when this transport is used.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

# the keys of a client connection file that hold controller ports
PORT_KEYS = ("registration", "control", "mux", "task", "iopub", "notification", "broadcast")
_WILDCARDS = ("", "*", "0.0.0.0", "::")


class TunnelError(OSError):
    """The tunnel could not be opened (ssh missing, refused, authentication failed, …)."""


def split_server(server: str) -> tuple[str, str | None]:
    """``user@host:port`` -> (``user@host``, ``port``), as stock's tunnels accept it."""
    if ":" in server and not server.endswith("]"):
        host, _, port = server.rpartition(":")
        if port.isdigit():
            return host, port
    return server, None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            return False
    return True


class SshTunnel:
    """One ``ssh -N -L …`` child forwarding local ports to ``remote_ip`` ports as seen from
    ``server``; ``close()`` ends it."""

    def __init__(self, server, forwards, keyfile=None, password=None, timeout=10.0):
        ssh = shutil.which("ssh")
        if ssh is None:
            raise TunnelError("SSH tunnels need the OpenSSH client ('ssh' is not on PATH)")
        host, port = split_server(server)
        argv = [ssh, "-N", "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=30"]
        # more ssh options, e.g. "-F ~/cluster-ssh-config" or "-J jumphost"
        argv += shlex.split(os.environ.get("OXIPP_SSH_ARGS", ""))
        if port:
            argv += ["-p", port]
        if keyfile:
            argv += ["-i", os.path.expanduser(keyfile)]
        for lport, remote_ip, rport in forwards:
            argv += ["-L", f"127.0.0.1:{lport}:{remote_ip}:{rport}"]
        argv.append(host)
        self.argv = argv
        self.server = server
        self.local_ports = [f[0] for f in forwards]
        self._askpass_dir = None
        env = dict(os.environ)
        if password:
            env.update(self._askpass_env(password))
        else:
            argv[1:1] = ["-o", "BatchMode=yes"]  # fail instead of prompting on no terminal
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # no controlling terminal: ssh asks SSH_ASKPASS, not a tty
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.close()
            raise

    def _askpass_env(self, password: str) -> dict:
        self._askpass_dir = tempfile.mkdtemp(prefix="oxipp-ssh-")
        script = os.path.join(self._askpass_dir, "askpass")
        with open(script, "w") as f:
            f.write('#!/bin/sh\nprintf "%s\\n" "$OXIPP_SSH_PASSWORD"\n')
        os.chmod(script, stat.S_IRWXU)
        return {
            "SSH_ASKPASS": script,
            "SSH_ASKPASS_REQUIRE": "force",
            "DISPLAY": os.environ.get("DISPLAY", ":0"),
            "OXIPP_SSH_PASSWORD": password,
        }

    def _wait_ready(self, timeout: float):
        deadline = time.monotonic() + (timeout if timeout and timeout > 0 else 10.0)
        pending = list(self.local_ports)
        while pending:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace").strip()
                raise TunnelError(
                    f"ssh tunnel to {self.server} failed (ssh exited with status "
                    f"{self.proc.returncode}): {err or 'no message'}\n"
                    f"command: {shlex.join(self.argv)}"
                )
            if _accepts(pending[0]):
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise TunnelError(
                    f"ssh tunnel to {self.server} not ready after {timeout} s "
                    f"(command: {shlex.join(self.argv)})"
                )
            time.sleep(0.05)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self):
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        if self._askpass_dir is not None:
            shutil.rmtree(self._askpass_dir, ignore_errors=True)
            self._askpass_dir = None


def use_paramiko(paramiko: bool | None) -> bool:
    """Stock's choice of transport: paramiko when asked for; with ``None``, on Windows and
    wherever there is no OpenSSH client, else OpenSSH."""
    if paramiko is None:
        return sys.platform == "win32" or shutil.which("ssh") is None
    return bool(paramiko)


def remote_address(cfg: dict) -> str:
    """The controller's address as the SSH server sees it (stock: the interface, or the
    ``location`` when the controller listens on every interface)."""
    addr = cfg["interface"].split("://", 1)[-1]
    if addr in _WILDCARDS:
        addr = cfg.get("location") or "127.0.0.1"
    return addr


def _is_local_host(name: str) -> bool:
    if name in ("localhost", socket.gethostname()):
        return True
    try:
        ip = socket.gethostbyname(name)
    except OSError:
        return False
    if ip.startswith("127."):
        return True
    try:
        return ip in socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:
        return False


def choose_server(cfg: dict, sshserver, sshkey, password):
    """Which SSH server to tunnel through, or None for a direct connection, by stock's rules:
    the argument; else the connection file's ``ssh``, except for a controller on loopback
    whose ``location`` is this machine; with only a key or a password given, the
    controller's own host."""
    server = sshserver or None
    if server is None:
        addr = remote_address(cfg)
        location = cfg.get("location")
        if location and addr in ("127.0.0.1", "localhost", "::1"):
            if not _is_local_host(location):
                server = cfg.get("ssh") or None
        else:
            server = cfg.get("ssh") or None
    if server is None and (sshkey or password):
        server = remote_address(cfg)
    return server


def tunneled(cfg: dict, server: str, sshkey=None, password=None, timeout=10.0, paramiko=None):
    """Opens the tunnel (OpenSSH or paramiko, see :func:`use_paramiko`); returns
    ``(cfg for the local ends, SshTunnel or ParamikoTunnel)``."""
    remote_ip = remote_address(cfg)
    local = {}
    forwards = []
    for key in PORT_KEYS:
        rport = cfg.get(key)
        if rport in (None, "") or rport in local:
            continue
        local[rport] = _free_port()
        forwards.append((local[rport], remote_ip, int(rport)))
    if use_paramiko(paramiko):
        from .paramiko_tunnel import ParamikoTunnel as cls  # imports paramiko: only when used
    else:
        cls = SshTunnel
    tunnel = cls(server, forwards, keyfile=sshkey, password=password, timeout=timeout)
    new = dict(cfg)
    new["interface"] = "tcp://127.0.0.1"
    new.pop("location", None)
    for key in PORT_KEYS:
        if key in new and new[key] in local:
            new[key] = local[new[key]]
    return new, tunnel
