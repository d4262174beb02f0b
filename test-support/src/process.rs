//! Process plumbing shared by the test servers: free ports, readiness waits, polite stops.

use std::net::{TcpListener, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_local_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`, or panics with `what`
/// and the server's log once `child` exits or `limit` passes.
pub(crate) fn wait_for_port(port: u16, child: &mut Child, limit: Duration, what: &str, log: &std::path::Path) {
    let deadline = Instant::now() + limit;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited with {status} before listening on port {port}; log:\n{}",
                read_log(log)
            );
        }
        if Instant::now() > deadline {
            panic!("{what} did not listen on port {port} within {limit:?}; log:\n{}", read_log(log));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn read_log(log: &std::path::Path) -> String {
    std::fs::read_to_string(log).unwrap_or_else(|e| format!("(cannot read {}: {e})", log.display()))
}

/// Sends `signal` to `child` and waits for it to exit, killing it if it takes longer than 20 s.
pub(crate) fn stop_child(child: &mut Child, signal: libc::c_int) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    // SAFETY: kill(2) with the pid of a child we own and have not reaped yet.
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
