"""``Client(sshserver=..., sshkey=...)``: the client reaches a controller through an SSH tunnel
(a real OpenSSH server on a free loopback port, key authentication), as users reach a
cluster's controller from a laptop; through the OpenSSH client and, with ``paramiko=True``,
through paramiko."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import oxipp
import pytest
from clusters import Cluster, wait_for
from oxipp.client import paramiko_tunnel, tunnel

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
pytestmark = pytest.mark.skipif(
    not (os.path.exists(SSHD) and shutil.which("ssh") and shutil.which("ssh-keygen")),
    reason="needs OpenSSH (openssh-server and openssh-client; scripts/setup.sh installs them)",
)


def _free_port() -> int:
    return tunnel._free_port()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """An sshd for the current user only, on a free loopback port; yields (server, key, env)."""
    d = tmp_path_factory.mktemp("sshd")
    os.chmod(d, 0o700)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d / "host"], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d / "user"], check=True)
    shutil.copy(d / "user.pub", d / "authorized_keys")
    os.chmod(d / "authorized_keys", 0o600)
    port = _free_port()
    (d / "sshd_config").write_text(
        f"""Port {port}
ListenAddress 127.0.0.1
HostKey {d / "host"}
PidFile {d / "sshd.pid"}
AuthorizedKeysFile {d / "authorized_keys"}
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
AllowTcpForwarding yes
"""
    )
    with contextlib.suppress(OSError):  # the privilege separation dir sshd wants as root
        Path("/run/sshd").mkdir(exist_ok=True)
    log = open(d / "sshd.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", d / "sshd_config"], stdout=log, stderr=log)
    wait_for(lambda: tunnel._accepts(port) or proc.poll() is not None, 10, "sshd")
    if proc.poll() is not None:
        pytest.fail(f"sshd did not start: {(d / 'sshd.log').read_text()}")
    user = os.environ.get("USER") or subprocess.check_output(["id", "-un"], text=True).strip()
    ssh_args = f"-o UserKnownHostsFile={d / 'known_hosts'} -o StrictHostKeyChecking=accept-new"
    yield f"{user}@127.0.0.1:{port}", str(d / "user"), ssh_args
    proc.kill()
    proc.wait(5)


@pytest.fixture(scope="module")
def cluster(oxipp_bin, tmp_path_factory):
    c = Cluster(oxipp_bin, tmp_path_factory.mktemp("ssh") / "profile", engine_kind="oxipp")
    c.start_controller()
    c.start_engine()
    yield c
    c.stop()


@oxipp.interactive
def answer():
    return 6 * 7


@oxipp.interactive
def inc(x):
    return x + 1


@oxipp.interactive
def sizes():
    return len(blob) + a.nbytes  # noqa: F821 - the engine's globals


def _ssh_children():
    out = subprocess.run(["pgrep", "-f", "ssh -o BatchMode=yes -N"], capture_output=True)
    return {int(p) for p in out.stdout.split()}


def test_client_through_an_ssh_tunnel(cluster, sshd, monkeypatch):
    server, key, ssh_args = sshd
    monkeypatch.setenv("OXIPP_SSH_ARGS", ssh_args)
    monkeypatch.setitem(sys.modules, "paramiko", None)  # the OpenSSH path never imports it
    before = _ssh_children()
    rc = oxipp.Client(profile_dir=str(cluster.profile_dir), sshserver=server, sshkey=key)
    try:
        t = rc._tunnel
        assert t is not None and t.alive
        # every controller port goes through the tunnel, none directly
        direct = {cluster_port for cluster_port in _controller_ports(cluster)}
        assert direct.isdisjoint(t.local_ports)
        _drive(rc)
        assert _ssh_children() - before == {t.proc.pid}
    finally:
        rc.close()
    # closing the client ends its ssh process
    wait_for(lambda: _ssh_children() - before == set(), 10, "the ssh tunnel to end")


def _drive(rc):
    """Direct, load-balanced and Hub work through the client's tunnel."""
    rc.wait_for_engines(1, timeout=30)
    assert rc[:].apply_sync(answer) == [42]
    rc[:].push({"x": 5}, block=True)
    assert rc[:].pull("x", block=True) == [5]
    assert rc.load_balanced_view().map_sync(inc, range(5)) == [1, 2, 3, 4, 5]
    assert rc.queue_status()[0]["queue"] == 0


def _controller_ports(cluster):
    import json

    cfg = json.loads(cluster.client_file.read_text())
    return [cfg[k] for k in tunnel.PORT_KEYS if k in cfg]


def test_unreachable_ssh_server_is_a_clear_error_and_leaves_nothing(cluster, monkeypatch):
    monkeypatch.setenv("OXIPP_SSH_ARGS", "-o ConnectTimeout=5")
    before = _ssh_children()
    t0 = time.monotonic()
    with pytest.raises(OSError, match="ssh tunnel to 127.0.0.1:1 failed"):
        oxipp.Client(profile_dir=str(cluster.profile_dir), sshserver="127.0.0.1:1", timeout=10)
    assert time.monotonic() - t0 < 10
    assert _ssh_children() - before == set()


def test_refused_key_is_a_clear_error(cluster, sshd, monkeypatch, tmp_path):
    server, _key, ssh_args = sshd
    monkeypatch.setenv("OXIPP_SSH_ARGS", ssh_args)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "stranger"], check=True
    )
    with pytest.raises(OSError, match="Permission denied"):
        oxipp.Client(
            profile_dir=str(cluster.profile_dir),
            sshserver=server,
            sshkey=str(tmp_path / "stranger"),
        )


def test_which_server_by_stock_rules():
    cfg = {"interface": "tcp://127.0.0.1", "location": "127.0.0.1", "ssh": "me@gw"}
    # a controller on this machine: no tunnel unless asked for
    assert tunnel.choose_server(cfg, None, None, None) is None
    assert tunnel.choose_server(cfg, "u@h", None, None) == "u@h"
    # a controller elsewhere that listens on its loopback: through its ssh server
    assert tunnel.choose_server({**cfg, "location": "10.255.1.2"}, None, None, None) == "me@gw"
    # only a key: through the controller's own host
    assert tunnel.choose_server({"interface": "tcp://10.1.2.3"}, None, "k", None) == "10.1.2.3"
    assert tunnel.remote_address({"interface": "tcp://0.0.0.0", "location": "h"}) == "h"
    assert tunnel.split_server("u@h:2222") == ("u@h", "2222")
    assert tunnel.split_server("u@h") == ("u@h", None)


# --- paramiko=True: the same tunnel through one paramiko connection in this process ---

needs_paramiko = pytest.mark.skipif(
    importlib.util.find_spec("paramiko") is None,
    reason="needs paramiko (scripts/setup.sh installs it)",
)


@pytest.fixture
def ssh_home(sshd, tmp_path, monkeypatch):
    """A HOME whose ~/.ssh/known_hosts knows the test sshd's host key (paramiko reads it), no
    agent, no host key policy from the environment; yields (server, key)."""
    server, key, _ = sshd
    port = tunnel.split_server(server)[1]
    host_pub = Path(key).with_name("host.pub").read_text().split()
    (tmp_path / ".ssh").mkdir(mode=0o700)
    (tmp_path / ".ssh" / "known_hosts").write_text(
        f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n"
    )
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("PYZMQ_PARAMIKO_HOST_KEY_POLICY", raising=False)
    monkeypatch.delenv("OXIPP_SSH_ARGS", raising=False)
    return server, key


def _assert_closed(t):
    """After close(): no forwarding thread left, no listening port, no SSH connection."""
    wait_for(lambda: not t.threads, 10, "the paramiko forwarding threads to end")
    assert not [th for th in threading.enumerate() if th.name.startswith("oxipp-paramiko")]
    assert not t.alive
    for port in t.local_ports:
        assert not tunnel._accepts(port), f"127.0.0.1:{port} still accepts after close()"


@needs_paramiko
def test_client_through_a_paramiko_tunnel(cluster, ssh_home):
    server, key = ssh_home
    before = _ssh_children()
    rc = oxipp.Client(
        profile_dir=str(cluster.profile_dir), sshserver=server, sshkey=key, paramiko=True
    )
    try:
        t = rc._tunnel
        assert isinstance(t, paramiko_tunnel.ParamikoTunnel) and t.alive
        assert set(_controller_ports(cluster)).isdisjoint(t.local_ports)
        _drive(rc)
        # the sockets are forwarded by threads of this process, not by an ssh child
        assert _ssh_children() - before == set()
        assert t.threads
        ports = list(t.local_ports)
    finally:
        rc.close()
    _assert_closed(t)
    assert t.local_ports == ports


@needs_paramiko
def test_large_data_through_a_paramiko_tunnel(cluster, ssh_home):
    import numpy as np

    server, key = ssh_home
    rc = oxipp.Client(
        profile_dir=str(cluster.profile_dir), sshserver=server, sshkey=key, paramiko=True
    )
    try:
        rc.wait_for_engines(1, timeout=30)
        a = np.random.default_rng(1).random(20 * 2**20 // 8)  # 20 MiB
        blob = os.urandom(20 * 2**20)
        rc[:].push({"a": a, "blob": blob}, block=True)
        back_a, back_blob = rc[:].pull(("a", "blob"), block=True)[0]
        assert np.array_equal(back_a, a)
        assert back_blob == blob
        assert rc[:].apply_sync(sizes) == [40 * 2**20]
    finally:
        rc.close()
    _assert_closed(rc._tunnel)


@needs_paramiko
def test_paramiko_tunnel_by_default_without_an_ssh_client(cluster, ssh_home, monkeypatch, tmp_path):
    server, key = ssh_home
    assert not tunnel.use_paramiko(False)
    assert tunnel.use_paramiko(True)
    assert tunnel.use_paramiko(None) == (sys.platform == "win32")  # ssh is on PATH here
    monkeypatch.setenv("PATH", str(tmp_path))  # no ssh: paramiko, as stock
    assert tunnel.use_paramiko(None)
    rc = oxipp.Client(profile_dir=str(cluster.profile_dir), sshserver=server, sshkey=key)
    try:
        assert isinstance(rc._tunnel, paramiko_tunnel.ParamikoTunnel)
        rc.wait_for_engines(1, timeout=30)
        assert rc[:].apply_sync(answer) == [42]
    finally:
        rc.close()
    _assert_closed(rc._tunnel)


@needs_paramiko
def test_paramiko_refused_key_is_a_clear_error(cluster, ssh_home, tmp_path):
    server, _key = ssh_home
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "stranger"], check=True
    )
    before = {th.name for th in threading.enumerate()}
    with pytest.raises(OSError, match=r"ssh tunnel to .* failed \(paramiko\): Permission denied"):
        oxipp.Client(
            profile_dir=str(cluster.profile_dir),
            sshserver=server,
            sshkey=str(tmp_path / "stranger"),
            paramiko=True,
        )
    # a wrong password (this sshd accepts none) is refused the same way
    with pytest.raises(OSError, match="Permission denied.*wrong password"):
        oxipp.Client(
            profile_dir=str(cluster.profile_dir),
            sshserver=server,
            sshkey=str(tmp_path / "stranger"),
            password="not-the-password",
            paramiko=True,
        )
    after = {th.name for th in threading.enumerate()}
    assert not [n for n in after - before if n.startswith("oxipp-paramiko")]


@needs_paramiko
def test_paramiko_unreachable_host_is_a_clear_error(cluster, ssh_home):
    t0 = time.monotonic()
    with pytest.raises(OSError, match=r"ssh tunnel to 127.0.0.1:1 failed.*cannot reach"):
        oxipp.Client(profile_dir=str(cluster.profile_dir), sshserver="127.0.0.1:1", paramiko=True)
    assert time.monotonic() - t0 < 10


@needs_paramiko
def test_paramiko_unknown_host_key(cluster, ssh_home, monkeypatch):
    server, key = ssh_home
    (Path(os.environ["HOME"]) / ".ssh" / "known_hosts").write_text("")
    with pytest.raises(OSError, match="not found in known_hosts.*PYZMQ_PARAMIKO_HOST_KEY_POLICY"):
        oxipp.Client(
            profile_dir=str(cluster.profile_dir), sshserver=server, sshkey=key, paramiko=True
        )
    # stock's switch: accept the unknown host
    monkeypatch.setenv("PYZMQ_PARAMIKO_HOST_KEY_POLICY", "AutoAdd")
    rc = oxipp.Client(
        profile_dir=str(cluster.profile_dir), sshserver=server, sshkey=key, paramiko=True
    )
    try:
        rc.wait_for_engines(1, timeout=30)
        assert rc[:].apply_sync(answer) == [42]
    finally:
        rc.close()
    # a known host whose key changed is refused, whatever the policy
    port = tunnel.split_server(server)[1]
    other = Path(key).with_name("user.pub").read_text().split()  # some other ed25519 key
    (Path(os.environ["HOME"]) / ".ssh" / "known_hosts").write_text(
        f"[127.0.0.1]:{port} {other[0]} {other[1]}\n"
    )
    with pytest.raises(OSError, match="does not match"):
        oxipp.Client(
            profile_dir=str(cluster.profile_dir), sshserver=server, sshkey=key, paramiko=True
        )


def test_paramiko_missing_is_a_clear_import_error(cluster, sshd, monkeypatch):
    server, key, _ = sshd
    monkeypatch.setitem(sys.modules, "paramiko", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install paramiko"):
        oxipp.Client(
            profile_dir=str(cluster.profile_dir), sshserver=server, sshkey=key, paramiko=True
        )
    # no tunnel, no paramiko needed (stock ignores the flag then too)
    rc = oxipp.Client(profile_dir=str(cluster.profile_dir), paramiko=True)
    try:
        assert rc._tunnel is None
        rc.wait_for_engines(1, timeout=30)
    finally:
        rc.close()
