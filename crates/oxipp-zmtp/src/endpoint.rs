//! `tcp://host:port` endpoints: parsing, a non-blocking listener, a non-blocking connect.
//!
//! Only TCP: oxipp's controller refuses other transports already. `*` as host binds every
//! interface; `*` or `0` as port binds a free port (the caller learns which one).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};

use rustix::net::{AddressFamily, SocketFlags, SocketType};

/// Splits `tcp://host:port` into `(host, port)`; `*` port means 0.
fn split(endpoint: &str) -> io::Result<(&str, u16)> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad endpoint {endpoint:?}"),
        )
    };
    let rest = endpoint.strip_prefix("tcp://").ok_or_else(bad)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let port = if port == "*" {
        0
    } else {
        port.parse().map_err(|_| bad())?
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host, port))
}

/// Resolves an endpoint to one address (the first; `*` is 0.0.0.0).
pub fn resolve(endpoint: &str) -> io::Result<SocketAddr> {
    let (host, port) = split(endpoint)?;
    let host = if host == "*" { "0.0.0.0" } else { host };
    (host, port).to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{endpoint:?} resolves to nothing"),
        )
    })
}

/// Pending connections a listener queues (the kernel caps it at `net.core.somaxconn`).
/// std listens with 128 and libzmq with 100: when thousands of engines connect at once the
/// queue overflows, the kernel drops their SYNs, and each such connect waits for TCP's 1 s
/// SYN retransmission (5,000 engines registering: 13,000 overflows, seconds lost).
const BACKLOG: i32 = 4096;

/// Binds a non-blocking listener (std sets SO_REUSEADDR, like libzmq) with a deep accept
/// queue.
pub fn listen(endpoint: &str) -> io::Result<TcpListener> {
    let l = TcpListener::bind(resolve(endpoint)?)?;
    // listen(2) again on a listening socket only changes its backlog
    rustix::net::listen(&l, BACKLOG)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Starts a non-blocking connect: the stream becomes writable when the connection is
/// established or has failed (then [`TcpStream::take_error`] says why).
pub fn start_connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(TcpStream::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(split("tcp://127.0.0.1:5555").unwrap(), ("127.0.0.1", 5555));
        assert_eq!(split("tcp://*:*").unwrap(), ("*", 0));
        assert_eq!(split("tcp://[::1]:7").unwrap(), ("::1", 7));
        assert!(split("ipc:///tmp/x").is_err());
        assert!(split("tcp://host").is_err());
        assert_eq!(resolve("tcp://*:0").unwrap().port(), 0);
    }
}
