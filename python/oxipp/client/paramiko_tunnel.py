"""SSH tunnels through paramiko (``Client(..., paramiko=True)``, or no ``ssh`` on PATH).

One paramiko ``Transport`` in this process: a thread accepts on the local ports, and each
accepted connection gets a ``direct-tcpip`` channel with a forwarding thread per direction (a
stalled send in one direction never holds up the other). Authentication like stock's
``zmq.ssh``: the key file, the keys in ``~/.ssh`` and the agent, then the password (also the
key's passphrase). Host keys are checked against ``~/.ssh/known_hosts``; an unknown host is
refused (as our OpenSSH path in batch mode does; stock only warns when a password is given)
unless ``PYZMQ_PARAMIKO_HOST_KEY_POLICY`` names another paramiko policy (``AutoAdd``: accept
and remember for this connection, ``Warning``: accept with a warning). paramiko is imported
only here, when this transport is used.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import selectors
import socket
import threading
import time
import warnings

from .tunnel import TunnelError, split_server

__all__ = ["ParamikoTunnel"]


def _import_paramiko():
    try:
        with warnings.catch_warnings():  # as stock: cryptography's deprecations are not ours
            warnings.simplefilter("ignore", DeprecationWarning)
            import paramiko
    except ImportError as e:
        raise ImportError(
            "SSH tunnels through paramiko (Client(..., paramiko=True), or no 'ssh' on PATH) "
            "need the paramiko package: pip install paramiko"
        ) from e
    return paramiko


def _host_key_policy(paramiko):
    """The missing-host-key policy: ``PYZMQ_PARAMIKO_HOST_KEY_POLICY`` as stock reads it
    (``AutoAdd``, ``Warning``, ``Reject``), refusing unknown hosts when unset."""
    name = os.environ.get("PYZMQ_PARAMIKO_HOST_KEY_POLICY", "").strip()
    if not name:
        return paramiko.RejectPolicy()
    cls = getattr(paramiko, name if name.endswith("Policy") else f"{name}Policy", None)
    if not (isinstance(cls, type) and issubclass(cls, paramiko.MissingHostKeyPolicy)):
        raise ValueError(
            f"PYZMQ_PARAMIKO_HOST_KEY_POLICY={name!r} is not a paramiko host key policy "
            "(AutoAdd, Warning or Reject)"
        )
    return cls()


def _split_user_host_port(server: str) -> tuple[str, str, int]:
    """``user@host:port`` -> (user, host, port) with this user and port 22 by default."""
    target, port = split_server(server)
    user, _, host = target.rpartition("@")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return user or getpass.getuser(), host, int(port) if port else 22


# how much one forwarding thread reads at a time
_CHUNK = 256 * 1024


class ParamikoTunnel:
    """One paramiko SSH connection forwarding local ports to ``remote_ip`` ports as seen from
    ``server`` (``forwards`` as for :class:`SshTunnel`); ``close()`` ends it, its threads and
    its listening sockets."""

    def __init__(self, server, forwards, keyfile=None, password=None, timeout=10.0):
        paramiko = _import_paramiko()
        self.server = server
        self.local_ports = [f[0] for f in forwards]
        self._timeout = timeout if timeout and timeout > 0 else 10.0
        self._closed = False
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._conns: set = set()  # accepted local sockets and their channels
        self._listeners: dict[socket.socket, tuple[str, int]] = {}
        self._client = None
        self._transport = None
        self._acceptor = None
        self._wake_r, self._wake_w = socket.socketpair()
        try:
            self._client = self._connect(paramiko, keyfile, password)
            self._transport = self._client.get_transport()
            self._transport.set_keepalive(30)
            for lport, remote_ip, rport in forwards:
                self._listen(lport, remote_ip, rport)
            self._acceptor = threading.Thread(
                target=self._accept_loop, name=f"oxipp-paramiko-accept-{server}", daemon=True
            )
            self._acceptor.start()
        except BaseException:
            self.close()
            raise

    def _fail(self, why: str) -> TunnelError:
        return TunnelError(f"ssh tunnel to {self.server} failed (paramiko): {why}")

    def _connect(self, paramiko, keyfile, password):
        user, host, port = _split_user_host_port(self.server)
        client = paramiko.SSHClient()
        client.load_system_host_keys()
        client.set_missing_host_key_policy(_host_key_policy(paramiko))
        t = self._timeout
        try:
            client.connect(
                host,
                port,
                username=user,
                password=password or None,
                key_filename=os.path.expanduser(keyfile) if keyfile else None,
                look_for_keys=True,
                allow_agent=True,
                timeout=t,
                banner_timeout=t,
                auth_timeout=t,
                channel_timeout=t,
            )
        except Exception as e:
            client.close()
            raise self._explain(paramiko, e, user, host, port, keyfile, password) from e
        except BaseException:
            client.close()
            raise
        return client

    def _explain(self, paramiko, e, user, host, port, keyfile, password):
        """A TunnelError that says what went wrong (``Permission denied`` for every
        authentication failure, as ssh says it: the client asks for a password on it)."""
        key = f"key file {keyfile}" if keyfile else "no key file"
        if isinstance(e, paramiko.BadHostKeyException):
            return self._fail(
                f"the host key of {host} does not match the one in ~/.ssh/known_hosts "
                f"(expected {e.expected_key.get_base64()[:16]}…, got "
                f"{e.key.get_base64()[:16]}…): possible man-in-the-middle, refusing"
            )
        if isinstance(e, paramiko.PasswordRequiredException):
            return self._fail(
                f"Permission denied: the private key ({key}) is encrypted; "
                "give its passphrase as password="
            )
        if isinstance(e, paramiko.BadAuthenticationType):
            return self._fail(
                f"Permission denied ({','.join(e.allowed_types)}) for {user}@{host}:{port}: "
                f"the server accepts none of the methods tried ({key}"
                f"{', a password' if password else ''})"
            )
        if isinstance(e, paramiko.AuthenticationException):
            what = "wrong password, or no accepted key" if password else "no accepted key"
            return self._fail(
                f"Permission denied for {user}@{host}:{port}: {what} ({key}, ~/.ssh keys, "
                f"agent{', password' if password else ''}): {e}"
            )
        if isinstance(e, paramiko.SSHException) and "known_hosts" in str(e):
            return self._fail(
                f"{e}: the host key of {host}:{port} is unknown. Connect once with ssh to add "
                "it to ~/.ssh/known_hosts, or set PYZMQ_PARAMIKO_HOST_KEY_POLICY=AutoAdd "
                "(or Warning) to accept it"
            )
        if isinstance(e, (TimeoutError, socket.timeout)):
            return self._fail(f"no answer from {host}:{port} within {self._timeout} s")
        if isinstance(e, paramiko.SSHException):
            return self._fail(f"SSH error talking to {host}:{port} (is it an SSH server?): {e}")
        if isinstance(e, paramiko.ssh_exception.NoValidConnectionsError):
            why = "; ".join(sorted({x.strerror or str(x) for x in e.errors.values()}))
            return self._fail(f"cannot reach {host}:{port}: {why}")
        if isinstance(e, OSError):
            return self._fail(f"cannot reach {host}:{port}: {e}")
        return self._fail(f"{type(e).__name__}: {e}")

    def _listen(self, lport, remote_ip, rport):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if os.name == "posix":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", lport))
            s.listen(64)
            s.setblocking(False)
        except OSError as e:
            s.close()
            raise self._fail(f"cannot listen on 127.0.0.1:{lport}: {e}") from e
        self._listeners[s] = (remote_ip, rport)

    def _spawn(self, target, name, *args):
        t = threading.Thread(target=self._run, args=(target, *args), name=name, daemon=True)
        with self._lock:
            if self._closed:
                return None
            self._threads.add(t)
        t.start()
        return t

    def _run(self, target, *args):
        try:
            target(*args)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _accept_loop(self):
        sel = selectors.DefaultSelector()
        try:
            sel.register(self._wake_r, selectors.EVENT_READ)
            for s in self._listeners:
                sel.register(s, selectors.EVENT_READ)
            while not self._closed:
                for key, _ in sel.select(1.0):
                    if key.fileobj is self._wake_r or self._closed:
                        return
                    try:
                        conn, peer = key.fileobj.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        if self._closed:
                            return
                        continue
                    conn.setblocking(True)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    remote_ip, rport = self._listeners[key.fileobj]
                    name = f"oxipp-paramiko-fwd-{rport}"
                    if self._spawn(self._forward, name, conn, peer, remote_ip, rport) is None:
                        conn.close()
        finally:
            sel.close()

    def _forward(self, conn, peer, remote_ip, rport):
        """One accepted connection: a channel to ``remote_ip:rport``; this thread copies from
        the server, a second one to it."""
        chan = None
        with self._lock:
            if self._closed:
                conn.close()
                return
            self._conns.add(conn)
        try:
            try:
                chan = self._transport.open_channel(
                    "direct-tcpip", (remote_ip, rport), peer, timeout=self._timeout
                )
            except Exception:  # noqa: BLE001 - refused by the server: drop this connection
                return
            with self._lock:
                if self._closed:
                    return
                self._conns.add(chan)
            up = self._spawn(self._copy_up, f"oxipp-paramiko-fwd-{rport}-up", conn, chan)
            if up is None:
                return
            try:
                while True:
                    data = chan.recv(_CHUNK)
                    if not data:
                        break
                    conn.sendall(data)
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_WR)
            except (OSError, EOFError):
                pass
            up.join(None if not self._closed else 1.0)
        finally:
            self._drop(conn, chan)

    def _copy_up(self, conn, chan):
        try:
            while True:
                data = conn.recv(_CHUNK)
                if not data:
                    break
                chan.sendall(data)
            with contextlib.suppress(Exception):
                chan.shutdown_write()
        except (OSError, EOFError):
            # one direction broke: end the other one too
            with contextlib.suppress(Exception):
                chan.close()

    def _drop(self, conn, chan):
        with self._lock:
            self._conns.discard(conn)
            self._conns.discard(chan)
        if chan is not None:
            with contextlib.suppress(Exception):
                chan.close()
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)
        conn.close()

    @property
    def alive(self) -> bool:
        return not self._closed and self._transport is not None and self._transport.is_active()

    @property
    def threads(self) -> list[threading.Thread]:
        """The accepting and forwarding threads still running."""
        with self._lock:
            ts = list(self._threads)
        if self._acceptor is not None and self._acceptor.is_alive():
            ts.append(self._acceptor)
        return ts

    def close(self):
        with self._lock:
            if self._closed and self._wake_w is None:
                return
            self._closed = True
            conns = list(self._conns)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._acceptor is not None and self._acceptor is not threading.current_thread():
            self._acceptor.join(5)
        for s in self._listeners:
            s.close()
        # wake every forwarding thread: sockets first, then the channels and the connection
        for c in conns:
            if isinstance(c, socket.socket):
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
            else:
                with contextlib.suppress(Exception):
                    c.close()
        if self._client is not None:
            self._client.close()
        deadline = time.monotonic() + 5
        for t in self.threads:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))
        self._wake_r.close()
        self._wake_w.close()
        self._wake_w = None
