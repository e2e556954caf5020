//! A TCP forwarding proxy that delays every byte by a fixed time in each direction: the added
//! round trip of a distant server, on a machine without netem.
//!
//! Each direction of each connection is a delay line: a reader stamps what it reads with the
//! time it is due and a writer sends it on no sooner. Bandwidth is not limited and data in
//! flight is not bounded, as on a long fat link, so parallel requests overlap as they would.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A running proxy on a free port of 127.0.0.1 that forwards to `upstream` with `one_way`
/// delay each way (so the round trip grows by twice that). Dropping it closes the listener
/// and every connection.
#[derive(Debug)]
pub struct DelayProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    /// Both ends of every connection, to shut them down on drop.
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl DelayProxy {
    /// Listens on a free loopback port and forwards each connection to `upstream`.
    ///
    /// # Errors
    /// Binding the listener.
    pub fn start(upstream: SocketAddr, one_way: Duration) -> io::Result<DelayProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let stop = Arc::clone(&stop);
            let streams = Arc::clone(&streams);
            thread::Builder::new()
                .name("delay-accept".into())
                .spawn(move || {
                    for client in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let Ok(client) = client else { continue };
                        if let Err(e) = connect(client, upstream, one_way, &streams) {
                            eprintln!("DelayProxy: connect to {upstream}: {e}");
                        }
                    }
                })?
        };
        Ok(DelayProxy {
            addr,
            stop,
            accept: Some(accept),
            streams,
        })
    }

    /// The address to connect to instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Joins `client` to a new connection to `upstream` through two delay lines.
fn connect(
    client: TcpStream,
    upstream: SocketAddr,
    one_way: Duration,
    streams: &Mutex<Vec<TcpStream>>,
) -> io::Result<()> {
    let server = TcpStream::connect(upstream)?;
    // The delay is ours to add: Nagle's would add its own on top.
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    {
        let mut all = streams.lock().unwrap_or_else(|p| p.into_inner());
        all.push(client.try_clone()?);
        all.push(server.try_clone()?);
    }
    delay_line(client.try_clone()?, server.try_clone()?, one_way)?;
    delay_line(server, client, one_way)
}

/// Copies `from` to `to`, each piece no sooner than `delay` after it was read; at the end of
/// `from`, shuts down the writing half of `to`.
fn delay_line(mut from: TcpStream, mut to: TcpStream, delay: Duration) -> io::Result<()> {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::Builder::new()
        .name("delay-read".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if tx
                            .send((Instant::now() + delay, buf[..n].to_vec()))
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        })?;
    thread::Builder::new()
        .name("delay-write".into())
        .spawn(move || {
            for (due, bytes) in rx {
                // The delay line itself: hold each piece until it is due.
                let now = Instant::now();
                if due > now {
                    thread::sleep(due - now);
                }
                if to.write_all(&bytes).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        })?;
    Ok(())
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees `stop`.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for s in self
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn forwards_both_ways_and_delays_each_direction() {
        let echo = TcpListener::bind("127.0.0.1:0").expect("bind the echo server");
        let upstream = echo.local_addr().expect("echo address");
        let server = thread::spawn(move || {
            let (mut s, _) = echo.accept().expect("accept");
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).expect("read the ping");
            s.write_all(&buf).expect("echo it");
        });
        let one_way = Duration::from_millis(40);
        let proxy = DelayProxy::start(upstream, one_way).expect("start the proxy");
        let mut c = TcpStream::connect(proxy.addr()).expect("connect through the proxy");
        let started = Instant::now();
        c.write_all(b"hello").expect("send");
        let mut back = [0u8; 5];
        c.read_exact(&mut back).expect("read the echo");
        let rtt = started.elapsed();
        assert_eq!(&back, b"hello");
        assert!(
            rtt >= 2 * one_way,
            "round trip {rtt:?} is below twice {one_way:?}"
        );
        server.join().expect("echo server");
        // The echo server closed its end: the proxy passes the end of stream on.
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).expect("read to the end");
        assert!(rest.is_empty());
        drop(proxy);
    }
}
