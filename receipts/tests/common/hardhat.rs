//! A local hardhat node (`contracts/node_modules`, installed by `scripts/contracts.sh`) for
//! tests that need a real EVM node with `eth_getProof`. Killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// hardhat's first two well-known development accounts (public test keys, funded at genesis).
pub const DEV_KEYS: [&str; 2] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
];

pub struct Hardhat {
    child: Child,
    pub url: String,
}

impl Drop for Hardhat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Hardhat {
    /// Starts a node on a free port, or returns `None` (with a loud message) when hardhat is
    /// not installed; under `CI=true` a missing hardhat fails the test instead.
    pub fn start() -> Option<Self> {
        let contracts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../contracts");
        let bin = contracts.join("node_modules/.bin/hardhat");
        if !bin.exists() {
            let msg = format!(
                "hardhat is not installed at {}: run `bash scripts/contracts.sh install`",
                bin.display()
            );
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{msg}");
            }
            eprintln!("\n!!!!! SKIPPED: {msg} !!!!!\n");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(bin)
            .args([
                "--config",
                "hardhat.config.cjs",
                "node",
                "--hostname",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .current_dir(&contracts)
            .env("HARDHAT_DISABLE_TELEMETRY_PROMPT", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hardhat");
        let node = Hardhat { child, url: format!("http://127.0.0.1:{port}") };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(90) {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(node);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("hardhat did not listen on port {port} within 90 s");
    }
}
