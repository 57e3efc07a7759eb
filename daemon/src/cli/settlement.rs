//! The subcommands of the settlement side (`lorad chain`, `lorad receipts`) and of the
//! configuration file (`lorad config`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `lorad config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the file `--config` names as `lorad serve` would load it: keys, limits, files,
    /// key permissions, endpoints, the listen address. Exit 78 naming every bad key.
    Check,
}

/// Where `lorad chain` and `lorad receipts submit` talk to, and as whom.
#[derive(Debug, Clone, Args)]
pub struct ChainConn {
    /// JSON-RPC endpoint of the chain the contracts live on (the L2).
    #[arg(long, env = "LORAD_L2_RPC", value_name = "URL")]
    pub rpc: String,
    /// Key file that signs the transactions [default: the node key, node.key in the home].
    #[arg(long, value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// Deployment file (contract addresses) [default: deployment.json in the home].
    #[arg(long, value_name = "PATH", env = "LORAD_DEPLOYMENT")]
    pub deployment: Option<PathBuf>,
}

/// An amount of OPEN ("1000", "2.5"; 18 decimals).
fn open_amount(s: &str) -> Result<alloy_primitives::U256, String> {
    crate::commands::parse_open(s)
}

/// `lorad chain ...`
#[derive(Debug, Subcommand)]
pub enum ChainCommand {
    /// Deploy OpenToken, the registries and Settlement (test and dev chains); writes the
    /// deployment file. The key's account receives the whole OPEN supply.
    Deploy {
        /// Connection.
        #[command(flatten)]
        conn: ChainConn,
        /// Treasury [default: the deploying account].
        #[arg(long, value_name = "ADDRESS")]
        treasury: Option<alloy_primitives::Address>,
    },
    /// Stake OPEN for this key's account in NodeRegistry (approve + stake).
    Stake {
        /// Connection.
        #[command(flatten)]
        conn: ChainConn,
        /// OPEN to stake.
        #[arg(long, value_parser = open_amount)]
        amount: alloy_primitives::U256,
    },
    /// Send OPEN.
    Transfer {
        /// Connection.
        #[command(flatten)]
        conn: ChainConn,
        /// Recipient.
        #[arg(long, value_name = "ADDRESS")]
        to: alloy_primitives::Address,
        /// OPEN to send.
        #[arg(long, value_parser = open_amount)]
        amount: alloy_primitives::U256,
    },
    /// Put OPEN in escrow for receipts a node signs (approve + deposit).
    Deposit {
        /// Connection.
        #[command(flatten)]
        conn: ChainConn,
        /// The node the escrow pays.
        #[arg(long, value_name = "ADDRESS")]
        node: alloy_primitives::Address,
        /// OPEN to deposit.
        #[arg(long, value_parser = open_amount)]
        amount: alloy_primitives::U256,
    },
    /// Register a stored adapter: id keccak256(name), its content hash and base-model hash
    /// from the store, its Datanet, its prices.
    RegisterAdapter {
        /// Connection.
        #[command(flatten)]
        conn: ChainConn,
        /// The adapter (in the store).
        #[arg(long)]
        adapter: String,
        /// The Datanet it was trained on.
        #[arg(long)]
        datanet: String,
        /// OPEN per 1,000 prompt tokens.
        #[arg(long, value_parser = open_amount)]
        price_in: alloy_primitives::U256,
        /// OPEN per 1,000 answer tokens.
        #[arg(long, value_parser = open_amount)]
        price_out: alloy_primitives::U256,
    },
    /// Register a Datanet (id keccak256(name), its Merkle root) and contributors' payouts.
    CreateDatanet {
        /// Connection.
        #[command(flatten)]
        conn: ChainConn,
        /// The Datanet (under datanets/ in the home).
        #[arg(long)]
        datanet: String,
        /// CONTRIBUTOR=0xADDRESS: where a contributor is paid (repeatable).
        #[arg(long = "payout", value_name = "CONTRIBUTOR=ADDRESS")]
        payouts: Vec<String>,
    },
    /// OPEN balance, Settlement credit and stake of an account, as JSON.
    Status {
        /// Connection.
        #[command(flatten)]
        conn: ChainConn,
        /// The account [default: the key's].
        #[arg(long, value_name = "ADDRESS")]
        address: Option<alloy_primitives::Address>,
    },
}

impl ChainCommand {
    /// The connection every subcommand names.
    pub fn conn(&self) -> &ChainConn {
        match self {
            Self::Deploy { conn, .. }
            | Self::Stake { conn, .. }
            | Self::Transfer { conn, .. }
            | Self::Deposit { conn, .. }
            | Self::RegisterAdapter { conn, .. }
            | Self::CreateDatanet { conn, .. }
            | Self::Status { conn, .. } => conn,
        }
    }
}

/// `lorad receipts ...`
#[derive(Debug, Subcommand)]
pub enum ReceiptsCommand {
    /// Print the node's address (what to stake in NodeRegistry), creating the key file
    /// (mode 0600) if it does not exist.
    Key {
        /// The key file [default: node.key in the home].
        #[arg(long, value_name = "PATH", env = "LORAD_NODE_KEY")]
        node_key: Option<PathBuf>,
    },
    /// Print every journaled receipt as one JSON object per line (safe while lorad runs).
    Export {
        /// The journal [default: receipts/receipts.log in the home].
        #[arg(long, value_name = "PATH")]
        journal: Option<PathBuf>,
        /// Chain id of the Settlement contract (adds each receipt's EIP-712 digest).
        #[arg(long)]
        chain_id: Option<u64>,
        /// Address of the Settlement contract (with --chain-id).
        #[arg(long, value_name = "ADDRESS")]
        settlement: Option<alloy_primitives::Address>,
    },
    /// Settle every journaled receipt not yet settled, in batches, exactly once (resumes
    /// after a crash: Settlement is asked what it already has).
    Submit {
        /// Connection (the key pays the gas).
        #[command(flatten)]
        conn: ChainConn,
        /// Receipts per transaction (about 70,000 gas each).
        #[arg(long, default_value_t = 100)]
        batch: usize,
    },
}
