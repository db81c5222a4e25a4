//! `e2d-sim [N] [--seed S]`: runs N seeds of whole simulated e2d clusters
//! under faults and prints what the checkers found. Built with
//! `RUSTFLAGS="--cfg madsim"`; `just sim` does that.

#[cfg(madsim)]
fn main() -> std::process::ExitCode {
    use clap::Parser;
    use e2d_sim::runner;
    use e2d_sim::scenario::RunConfig;

    /// Runs simulated e2d clusters under faults and checks what clients saw.
    #[derive(Parser)]
    #[command(name = "e2d-sim")]
    struct Args {
        /// How many seeds to run.
        #[arg(default_value_t = 200)]
        seeds: u64,
        /// The first seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Threads running seeds at once (default: one per core).
        #[arg(long)]
        jobs: Option<usize>,
        /// Nodes in the cluster (3 or 5).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=9))]
        nodes: u64,
        /// How long clients run in each seed, in simulated seconds.
        #[arg(long, default_value_t = 60)]
        workload_secs: u64,
        /// Run every seed twice and fail when the two traces differ.
        #[arg(long)]
        determinism: bool,
        /// Plant a bug, to see the checkers catch it: ack-before-fsync,
        /// reads-without-read-index, watch-resume-skips,
        /// restore-skips-newest, recover-every-survivor,
        /// recover-least-up-to-date, cluster-version-early.
        #[arg(long, value_delimiter = ',')]
        plant: Vec<String>,
        /// The command printed to replay a failed seed (followed by `1`,
        /// the flags that shape the run and `--seed S`).
        #[arg(long, default_value = "just sim")]
        replay: String,
    }

    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let mut template = RunConfig::new(args.seed);
    template.cluster_size = args.nodes as usize;
    template.workload_ms = args.workload_secs * 1_000;
    for bug in &args.plant {
        match bug.as_str() {
            "ack-before-fsync" => template.bugs.ack_before_fsync = true,
            "reads-without-read-index" => template.bugs.reads_without_read_index = true,
            "watch-resume-skips" => template.bugs.watch_resume_skips_a_revision = true,
            "restore-skips-newest" => template.bugs.restore_skips_the_newest_snapshot = true,
            "delta-skips-revision" => template.bugs.delta_skips_a_revision = true,
            "recover-every-survivor" => template.bugs.manager.recover_every_survivor = true,
            "recover-least-up-to-date" => {
                template.bugs.manager.recover_least_up_to_date = true;
            }
            "cluster-version-early" => {
                template.bugs.manager.cluster_version_before_every_member = true;
            }
            other => {
                eprintln!(
                    "error: --plant {other:?} is not a bug the simulator knows; use \
                     ack-before-fsync, reads-without-read-index, watch-resume-skips, \
                     restore-skips-newest, delta-skips-revision, recover-every-survivor, recover-least-up-to-date or \
                     cluster-version-early"
                );
                return std::process::ExitCode::from(2);
            }
        }
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let started = std::time::Instant::now();
    let progress = |report: &e2d_sim::scenario::Report| {
        let verdict = if report.failures.is_empty() {
            "ok"
        } else {
            "FAILED"
        };
        eprintln!(
            "seed {}: {verdict} ({} faults, {} ops, {:.0} s simulated, checked in {} ms, trace {})",
            report.seed,
            report.faults.len(),
            report.operations,
            report.simulated_ms as f64 / 1000.0,
            report.check_wall_ms,
            report.trace_hash
        );
    };
    let mut reports = runner::run_batch(&template, args.seed, args.seeds, jobs, &progress);
    if args.determinism {
        let again = runner::run_batch(&template, args.seed, args.seeds, jobs, &progress);
        for (first, second) in reports.iter_mut().zip(&again) {
            if first.trace_hash != second.trace_hash {
                first.failures.push(format!(
                    "not deterministic: trace {} then {}",
                    first.trace_hash, second.trace_hash
                ));
            }
        }
    }
    // The replay line carries the flags that shape a run.
    let mut shape = String::new();
    if args.nodes != 3 {
        shape.push_str(&format!(" --nodes {}", args.nodes));
    }
    if args.workload_secs != 60 {
        shape.push_str(&format!(" --workload-secs {}", args.workload_secs));
    }
    if !args.plant.is_empty() {
        shape.push_str(&format!(" --plant {}", args.plant.join(",")));
    }
    let replay = format!("{} 1{shape}", args.replay);
    print!("{}", runner::summary(&reports, started.elapsed(), &replay));
    if reports.iter().any(|r| !r.failures.is_empty()) {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "error: e2d-sim runs only in a simulator build: use `just sim [N] [--seed S]` \
         (or build with RUSTFLAGS=\"--cfg madsim\" and its own CARGO_TARGET_DIR)"
    );
    std::process::ExitCode::from(2)
}
