//! A TCP forwarder whose connections a test can cut: the broker (or any
//! server) stays up for everyone else while one client loses its link.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Forwards `127.0.0.1:<port>` to a target address, one thread pair per
/// connection. [`Cuttable::cut`] closes every open connection at once;
/// while [`Cuttable::refuse`] is on, new connections are closed as soon as
/// they are accepted (as a server that is down but whose port still
/// answers). Stops forwarding when dropped.
pub struct Cuttable {
    port: u16,
    s: Arc<Shared>,
}

struct Shared {
    target: SocketAddr,
    refusing: AtomicBool,
    stopped: AtomicBool,
    /// Both sockets of every forwarded connection, to shut down on a cut.
    open: Mutex<Vec<TcpStream>>,
}

impl Cuttable {
    /// Listen on an ephemeral port of 127.0.0.1 and forward to `target`.
    pub fn start(target: SocketAddr) -> Cuttable {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let s = Arc::new(Shared {
            target,
            refusing: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
        });
        let sh = s.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sh.stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = conn else { continue };
                if sh.refusing.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect_timeout(&sh.target, Duration::from_secs(5))
                else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                if let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) {
                    let mut open = sh.open.lock().unwrap_or_else(|p| p.into_inner());
                    open.push(c2);
                    open.push(s2);
                }
                pump(&client, &server);
                pump(&server, &client);
            }
        });
        Cuttable { port, s }
    }

    /// The forwarder's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Close every connection open through the forwarder now.
    pub fn cut(&self) {
        let open: Vec<TcpStream> = self
            .s
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for c in open {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// While `on`, close new connections as soon as they are accepted.
    pub fn refuse(&self, on: bool) {
        self.s.refusing.store(on, Ordering::SeqCst);
    }
}

impl Drop for Cuttable {
    fn drop(&mut self) {
        self.s.stopped.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accept loop so it sees `stopped`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copy `from` → `to` on a thread until either side closes.
fn pump(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    /// An echo server on an ephemeral port.
    fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut r = std::io::BufReader::new(c.try_clone().unwrap());
                    let mut w = c;
                    let mut line = String::new();
                    while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                        if w.write_all(line.as_bytes()).is_err() {
                            break;
                        }
                        line.clear();
                    }
                });
            }
        });
        a
    }

    fn roundtrip(c: &mut TcpStream, what: &str) -> std::io::Result<String> {
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        c.write_all(format!("{what}\n").as_bytes())?;
        let mut r = std::io::BufReader::new(c.try_clone()?);
        let mut line = String::new();
        r.read_line(&mut line)?;
        Ok(line)
    }

    #[test]
    fn forwards_then_cuts_open_connections_then_refuses_then_forwards_again() {
        let fwd = Cuttable::start(echo());
        let mut a = TcpStream::connect(("127.0.0.1", fwd.port())).unwrap();
        assert_eq!(roundtrip(&mut a, "one").unwrap(), "one\n");
        fwd.cut();
        // The cut connection reads end-of-stream (or an error), never an echo.
        assert_ne!(roundtrip(&mut a, "two").unwrap_or_default(), "two\n");
        fwd.refuse(true);
        let mut b = TcpStream::connect(("127.0.0.1", fwd.port())).unwrap();
        assert_ne!(roundtrip(&mut b, "three").unwrap_or_default(), "three\n");
        fwd.refuse(false);
        let mut c = TcpStream::connect(("127.0.0.1", fwd.port())).unwrap();
        assert_eq!(roundtrip(&mut c, "four").unwrap(), "four\n");
    }
}
