//! `e2d`: one binary that deploys and runs etcd clusters.

use clap::{CommandFactory, FromArgMatches};

use e2d_shell::cli::{self, Cli, Command};
use e2d_shell::{grpc, logging, run, status};

#[cfg(not(madsim))]
#[global_allocator]
static ALLOCATOR: e2d_allocator::MiMalloc = e2d_allocator::MiMalloc;

fn main() -> std::process::ExitCode {
    // SAFETY: the first thing main does; no other thread exists yet.
    #[cfg(not(madsim))]
    unsafe {
        e2d_allocator::configure()
    };
    e2d_shell::fail_stop::stop_on_panic();
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Command::Run(args) = &mut cli.command {
        args.cluster_size_given = matches
            .subcommand_matches("run")
            .and_then(|run| run.value_source("required_cluster_size"))
            .is_some_and(|source| source != clap::parser::ValueSource::DefaultValue);
    }
    match cli.command {
        Command::Version => {
            println!(
                "e2d {} (etcd API {})",
                env!("CARGO_PKG_VERSION"),
                grpc::ETCD_VERSION
            );
            std::process::ExitCode::SUCCESS
        }
        #[cfg(not(madsim))]
        Command::Snapshot(command) => match e2d_shell::backup::commands::run(*command) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        #[cfg(not(madsim))]
        Command::Migrate(args) => match e2d_shell::backup::commands::migrate(*args) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        #[cfg(not(madsim))]
        Command::Cluster(cli::ClusterCommand::Resize(args)) => {
            finish(e2d_shell::backup::commands::resize(&args).map(|done| done + "\n"))
        }
        #[cfg(not(madsim))]
        Command::Cluster(cli::ClusterCommand::Recover(args)) => {
            finish(e2d_shell::run::recover::recover_command(&args.data_dir))
        }
        #[cfg(madsim)]
        Command::Cluster(_) => {
            eprintln!("error: cluster commands do not run in a simulator build");
            std::process::ExitCode::FAILURE
        }
        #[cfg(madsim)]
        Command::Migrate(_) => {
            eprintln!("error: migrate does not run in a simulator build");
            std::process::ExitCode::FAILURE
        }
        #[cfg(madsim)]
        Command::Snapshot(_) => {
            eprintln!("error: snapshot commands do not run in a simulator build");
            std::process::ExitCode::FAILURE
        }
        #[cfg(not(madsim))]
        Command::Discover(args) => finish(e2d_shell::discovery::report::run(&args)),
        #[cfg(madsim)]
        Command::Discover(_) => {
            eprintln!("error: discover does not run in a simulator build");
            std::process::ExitCode::FAILURE
        }
        Command::Pki(command) => finish(
            e2d_shell::pki::run(*command)
                .map(|done| done + "\n")
                .map_err(|e| e.to_string()),
        ),
        Command::Status(args) => {
            let timeout = std::time::Duration::from_millis(args.timeout);
            let tls = match (&args.cacert, &args.cert, &args.key) {
                (Some(ca_cert), Some(cert), Some(key)) => Some(status::ClientTls {
                    ca_cert: ca_cert.clone(),
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            };
            match status::fetch(&args.endpoint, timeout, tls.as_ref()) {
                Ok(report) if args.json => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&report).unwrap_or_default()
                    );
                    std::process::ExitCode::SUCCESS
                }
                Ok(report) => {
                    print!("{}", status::render_table(&report));
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    std::process::ExitCode::FAILURE
                }
            }
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
            logging::init(args.log_format, filter);
            match run_until_stopped(&args) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    // A JSON log stays all JSON.
                    if args.log_format == logging::LogFormat::Text {
                        eprintln!("error: {e}");
                    }
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}

/// Prints what a command made, or its error, and gives the exit status.
fn finish(outcome: Result<String, String>) -> std::process::ExitCode {
    match outcome {
        Ok(text) => {
            print!("{text}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// How long tasks get to wind down when a removed member starts over.
#[cfg(not(madsim))]
const RESTART_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the member; a member its cluster removed moves its data dir aside
/// and runs again (one chosen to recover its cluster alone recovers its
/// data dir and runs again), each time on a fresh runtime so nothing of the old
/// member (tasks, sockets, the open database) survives.
#[cfg(not(madsim))]
fn run_until_stopped(args: &cli::RunArgs) -> Result<(), run::RunError> {
    loop {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("the tokio runtime starts");
        let stopped = runtime.block_on(run::run(args.clone()))?;
        e2d_shell::fail_stop::retiring_runtime(|| runtime.shutdown_timeout(RESTART_GRACE));
        match stopped {
            run::Stopped::Shutdown => return Ok(()),
            run::Stopped::Removed { removed_from } => {
                run::start_over(&args.data_dir, removed_from.as_ref())?
            }
            run::Stopped::Recover => run::recover_alone(&args.data_dir)?,
        }
    }
}

/// A simulator build runs nodes inside `e2d-sim` only.
#[cfg(madsim)]
fn run_until_stopped(_: &cli::RunArgs) -> Result<(), run::RunError> {
    Err(run::RunError::Config(
        "this e2d was built for the simulator (--cfg madsim); build it without to run a node"
            .into(),
    ))
}
