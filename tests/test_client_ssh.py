"""``Client(sshserver=..., sshkey=...)``: the client reaches a controller through an SSH tunnel
(a real OpenSSH server on a free loopback port, key authentication), as users reach a
cluster's controller from a laptop."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import oxipp
import pytest
from clusters import Cluster, wait_for
from oxipp.client import tunnel

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
PasswordAuthentication no
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


def _ssh_children():
    out = subprocess.run(["pgrep", "-f", "ssh -o BatchMode=yes -N"], capture_output=True)
    return {int(p) for p in out.stdout.split()}


def test_client_through_an_ssh_tunnel(cluster, sshd, monkeypatch):
    server, key, ssh_args = sshd
    monkeypatch.setenv("OXIPP_SSH_ARGS", ssh_args)
    before = _ssh_children()
    rc = oxipp.Client(profile_dir=str(cluster.profile_dir), sshserver=server, sshkey=key)
    try:
        t = rc._tunnel
        assert t is not None and t.alive
        # every controller port goes through the tunnel, none directly
        direct = {cluster_port for cluster_port in _controller_ports(cluster)}
        assert direct.isdisjoint(t.local_ports)
        rc.wait_for_engines(1, timeout=30)
        assert rc[:].apply_sync(answer) == [42]
        rc[:].push({"x": 5}, block=True)
        assert rc[:].pull("x", block=True) == [5]
        assert rc.load_balanced_view().map_sync(inc, range(5)) == [1, 2, 3, 4, 5]
        assert rc.queue_status()[0]["queue"] == 0
        assert _ssh_children() - before == {t.proc.pid}
    finally:
        rc.close()
    # closing the client ends its ssh process
    wait_for(lambda: _ssh_children() - before == set(), 10, "the ssh tunnel to end")


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


def test_paramiko_is_refused_clearly(cluster):
    with pytest.raises(NotImplementedError, match="OpenSSH"):
        oxipp.Client(profile_dir=str(cluster.profile_dir), paramiko=True)
