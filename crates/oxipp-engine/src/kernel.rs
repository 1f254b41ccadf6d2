//! `bind_kernel()`: the engine also serves as a Jupyter kernel, so `jupyter console --existing`
//! (or any jupyter_client) can run code in its namespace, as with stock engines.
//!
//! The kernel's sockets are bound here, in the caller's thread, and then handed to the IO
//! thread, which serves them like the engine's own: shell requests join the same queue (so
//! they run in the same namespace, one at a time), control and kernel_info are answered in
//! Rust, IOPub output goes to both the controller and the kernel's subscribers, and the
//! heartbeat REP socket is echoed by the IO thread (it never waits on Python).

use oxipp_wire::sockets::{bind, new_socket, Socket, SocketSpec};
use zmq::{Context, SocketType};

use crate::error::EngineError;

/// The five sockets of a Jupyter kernel.
pub struct KernelSockets {
    pub shell: Socket,
    pub control: Socket,
    pub stdin: Socket,
    pub iopub: Socket,
    pub hb: Socket,
}

/// The ports they were bound to, for the kernel's connection file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelPorts {
    pub shell: u16,
    pub control: u16,
    pub stdin: u16,
    pub iopub: u16,
    pub hb: u16,
}

/// Binds the kernel sockets on `ip` (random ports).
pub fn bind_all(ctx: &Context, ip: &str) -> Result<(KernelSockets, KernelPorts), EngineError> {
    let iface = format!("tcp://{ip}");
    let sock = |kind| {
        new_socket(
            ctx,
            kind,
            &SocketSpec {
                identity: None,
                subscribe_all: false,
            },
        )
    };
    let s = KernelSockets {
        shell: sock(SocketType::ROUTER)?,
        control: sock(SocketType::ROUTER)?,
        stdin: sock(SocketType::ROUTER)?,
        iopub: sock(SocketType::PUB)?,
        hb: sock(SocketType::REP)?,
    };
    let ports = KernelPorts {
        shell: bind(&s.shell, &iface, 0)?,
        control: bind(&s.control, &iface, 0)?,
        stdin: bind(&s.stdin, &iface, 0)?,
        iopub: bind(&s.iopub, &iface, 0)?,
        hb: bind(&s.hb, &iface, 0)?,
    };
    Ok((s, ports))
}
