//! The HTTP clients against a local server that answers from the saved fixtures: the sync
//! driver over real HTTP reaches the same verified finalized block as the offline replay,
//! `eth_getProof` over JSON-RPC verifies, and transport failures are typed errors.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lorad_lightclient::LightClientError;
use lorad_lightclient::consensus::NetworkConfig;
use lorad_lightclient::rpc::http::{HttpBeacon, HttpExecution};
use lorad_lightclient::rpc::{BeaconApi, ExecutionRpc};
use lorad_lightclient::sync::{SyncOptions, sync};

/// Serves fixture files for Beacon-API GETs and `eth_getProof` POSTs; records request lines.
fn serve(dir: PathBuf) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&log);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            seen.lock().unwrap().push(line.trim().to_owned());
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let lc = dir.join(common::HELIOS_LC);
            let file = if path.starts_with("/eth/v1/beacon/light_client/bootstrap/") {
                Some(lc.join("bootstrap.json"))
            } else if path.starts_with("/eth/v1/beacon/light_client/updates") {
                Some(lc.join("updates.json"))
            } else if path == "/eth/v1/beacon/light_client/finality_update" {
                Some(lc.join("finality.json"))
            } else if path == "/eth/v1/beacon/light_client/optimistic_update" {
                Some(lc.join("optimistic.json"))
            } else if line.starts_with("POST")
                && String::from_utf8_lossy(&body).contains("eth_getProof")
            {
                Some(dir.join(common::HELIOS_RPC).join("proof.json"))
            } else {
                None
            };
            let (status, text) = match file.and_then(|f| std::fs::read_to_string(f).ok()) {
                Some(t) => ("200 OK", t),
                None => ("404 Not Found", "{\"message\":\"not found\"}".to_owned()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (url, log)
}

#[test]
fn sync_over_http_reaches_the_verified_finalized_block() {
    let Some(dir) = common::fixtures_dir() else { return };
    let (url, log) = serve(dir);
    let beacon = HttpBeacon::new(&url, Duration::from_secs(10));
    let opts = SyncOptions {
        current_slot: 7_109_432,
        finality: true,
        optimistic: true,
        ..Default::default()
    };
    let (store, report) =
        sync(&NetworkConfig::mainnet(), &beacon, common::MAINNET_CHECKPOINT, opts, |_| {}).unwrap();
    assert_eq!(report.finalized.execution_block_number, 17_923_026);
    assert_eq!(store.optimistic_header.execution.block_number, 17_923_113);
    let log = log.lock().unwrap().clone();
    assert!(
        log.iter().any(|l| l.contains(&format!("bootstrap/{}", common::MAINNET_CHECKPOINT))),
        "bootstrap asked by root: {log:?}"
    );
    assert!(log.iter().any(|l| l.contains("updates?start_period=862&count=6")), "{log:?}");
}

#[test]
fn eth_get_proof_over_json_rpc_verifies() {
    let Some(dir) = common::fixtures_dir() else { return };
    let header = common::verified_block_header(&dir);
    let (url, _) = serve(dir);
    let rpc = HttpExecution::new(&url, Duration::from_secs(10));
    let address = alloy_primitives::address!("0x00000000219ab540356cbb839cbe05303d7705fa");
    let proof = rpc.get_proof(address, &[], header.number).unwrap();
    let verified = lorad_lightclient::verify_eip1186(header.state_root, &proof).unwrap();
    assert!(verified.account.exists);
}

#[test]
fn transport_failures_are_typed_errors() {
    let Some(dir) = common::fixtures_dir() else { return };
    let (url, _) = serve(dir);
    // 404 from the server.
    let rpc = HttpExecution::new(&url, Duration::from_secs(10));
    let err = rpc.get_code(alloy_primitives::Address::ZERO, 1).unwrap_err();
    assert!(matches!(err, LightClientError::Rpc { .. }), "{err}");
    // Nothing listening.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let err = HttpBeacon::new(&dead, Duration::from_secs(2)).finality_update().unwrap_err();
    assert!(matches!(err, LightClientError::Rpc { .. }), "{err}");
}
