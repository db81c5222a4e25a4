//! `e2d`: one binary that deploys and runs etcd clusters.

mod cli;
mod gossip;
mod grpc;
mod http;
mod metrics;
mod raft;
mod run;
mod server;
mod snapshot;
mod storage;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!(
                "e2d {} (etcd API {})",
                env!("CARGO_PKG_VERSION"),
                grpc::ETCD_VERSION
            );
            std::process::ExitCode::SUCCESS
        }
        Command::Run(args) => {
            // The storage engine's own info lines are noise to an operator.
            let directives = format!("fjall=warn,lsm_tree=warn,{}", args.log_level);
            let filter = tracing_subscriber::EnvFilter::try_new(&directives);
            let filter = match filter {
                Ok(filter) => filter,
                Err(e) => {
                    eprintln!("error: invalid --log-level {:?}: {e}", args.log_level);
                    return std::process::ExitCode::from(2);
                }
            };
            tracing_subscriber::fmt().with_env_filter(filter).init();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("the tokio runtime starts");
            match runtime.block_on(run::run(*args)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("error: {e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}
