//! What the benchmarks share: starting a `soakd sim` process on 127.0.0.1.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SOAKD: &str = env!("CARGO_BIN_EXE_soakd");

/// A `soakd sim` process, killed when dropped.
pub struct Sim {
    pub child: Child,
    pub port: u16,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `soakd sim` with `args` on `port` and waits until it accepts connections.
pub fn sim(port: u16, args: &[&str]) -> Sim {
    let child = Command::new(SOAKD)
        .args(["sim", "--port", &port.to_string()])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "sim did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Sim { child, port }
}
