//! `lorad config check`: loads the configuration the way `lorad serve` would (file, then
//! environment and flags over it) and checks everything that can be checked without
//! starting: limits, files, the device, the node key's permissions, the deployment and rollup
//! files, URLs, the light client's starting point, whether the listen address is free.
//! Prints one line per check; any error exits 78 after all of them ran.

use std::path::Path;

use clap::{CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command};
use crate::exit::ExitKind;
use crate::exit::coded;

/// Runs the checks for the configuration `--config` names.
pub(crate) fn check(cli_config: Option<&Path>) -> anyhow::Result<()> {
    let path = cli_config.ok_or_else(|| {
        coded(ExitKind::Usage, anyhow::anyhow!("pass --config PATH (or set LORAD_CONFIG)"))
    })?;
    // Exactly what `lorad --config PATH serve` would run with (environment included).
    let argv = ["lorad", "--config", &path.display().to_string(), "serve"].map(String::from);
    let matches = Cli::command().try_get_matches_from(argv)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    crate::config::merge(&mut cli, &matches)?;
    let home = cli.home.clone().unwrap_or_else(lorad_model::default_home);
    let Command::Serve(args) = cli.command else {
        return Err(anyhow::anyhow!("internal: the check parsed a command other than serve"));
    };
    let mut errors = 0usize;
    let mut report = |what: &str, r: anyhow::Result<String>| match r {
        Ok(note) => println!(
            "ok    {what}{}",
            if note.is_empty() { String::new() } else { format!(": {note}") }
        ),
        Err(e) => {
            errors += 1;
            println!("error {what}: {}", crate::exit::render(&e));
        }
    };
    report("limits", super::serve::validate(&args).map(|_| String::new()));
    report(
        "server.admin_token_file",
        super::serve::admin_token(&args).map(|t| {
            if t.is_some() { "admin API on".into() } else { "admin API off (no token)".into() }
        }),
    );
    report(
        "server.api_key_file",
        super::serve::api_keys(&args).map(|keys| match keys.len() {
            0 => "OpenAI routes open (no API key)".into(),
            n => format!("{n} API key(s); the OpenAI routes need one"),
        }),
    );
    report(
        "home",
        Ok(if home.is_dir() {
            home.display().to_string()
        } else {
            format!("{} does not exist yet (created on first start)", home.display())
        }),
    );
    report(
        "model.path",
        match &args.model.model {
            Some(p) if p.exists() => Ok(p.display().to_string()),
            Some(p) => Err(anyhow::anyhow!("{} does not exist", p.display())),
            None => Ok(format!(
                "the default model{}",
                if lorad_model::default_model_path(&home).is_file() {
                    ""
                } else {
                    " (fetched on first start)"
                }
            )),
        },
    );
    if let Some(spec) = &args.model.chat_template {
        report(
            "model.chat_template",
            super::common::chat_template(spec)
                .map(|t| format!("compiles; tool calls: {:?}", t.tool_support())),
        );
    }
    // Opened exactly as `serve` opens it, so `cuda` on a GPU-less node fails here, not at start.
    report(
        "model.device",
        super::common::device(args.model.device)
            .map(|d| format!("{} (asked: {})", super::common::device_name(&d), args.model.device)),
    );
    let receipts_on = args.deployment.is_some() || args.settlement.is_some();
    if receipts_on {
        let key = args.node_key.clone().unwrap_or_else(|| super::receipts::default_key_path(&home));
        report(
            "receipts.node_key",
            if key.exists() {
                lorad_contracts::NodeKey::load(&key)
                    .map(|k| format!("{} ({})", key.display(), k.address()))
                    .map_err(Into::into)
            } else {
                Ok(format!("{} (created on first start)", key.display()))
            },
        );
    }
    if let Some(d) = &args.deployment {
        report(
            "receipts.deployment",
            super::chain::read_deployment(d)
                .map(|d| format!("Settlement {} on chain {}", d.settlement, d.chain_id)),
        );
    }
    if args.l2_rpc.is_some() && args.deployment.is_none() {
        report(
            "chain.l2_rpc",
            Err(anyhow::anyhow!("needs receipts.deployment (the registries' addresses)")),
        );
    }
    if args.l2_rpc.is_some() && args.deployment.is_some() {
        report(
            "chain",
            super::follow::FollowConfig::from_args(&home, &args).map(|f| match f {
                Some(_) => {
                    "the light client's L2 follower proves the blocks receipts rest on".into()
                }
                None => {
                    "l2_trust_rpc_head: receipts rest on the RPC's newest block (development only)"
                        .into()
                }
            }),
        );
    }
    report(
        "server.listen",
        Ok(match std::net::TcpListener::bind(args.listen) {
            Ok(_) => format!("{} is free", args.listen),
            Err(e) => {
                format!("{} cannot be bound now ({e}); is lorad already running?", args.listen)
            }
        }),
    );
    if errors > 0 {
        return Err(coded(
            ExitKind::Config,
            anyhow::anyhow!("{errors} configuration error(s) in {}", path.display()),
        ));
    }
    println!("{} is valid", path.display());
    Ok(())
}
