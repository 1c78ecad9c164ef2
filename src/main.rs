//! The `trailwatch` binary: parses the command line and runs `serve`, `emit`, `import`,
//! `verify`, or manages tokens and users.

/// See Cargo.toml: events are allocated by request handlers and freed by the writer and
/// indexer threads, a pattern glibc's allocator handles slowly.
#[cfg(feature = "ssr")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "ssr")]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    use clap::Parser;
    use std::process::ExitCode;
    use trailwatch::auth::TokenOrigin;
    use trailwatch::config::{Cli, Command, FileConfig, ServeConfig, DEFAULT_DATA_DIR};
    use trailwatch::server::{shutdown_signal, Server};
    use trailwatch::store::{verify_path, DB_FILE};

    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TRAILWATCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let cli = Cli::parse();
    let file = match FileConfig::load(cli.config.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Serve(args) => {
            let config = ServeConfig::resolve(args, file);
            let server = match Server::bind(&config).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            if server.token_origin == TokenOrigin::Generated {
                println!(
                    "Admin token (shown once; also in {}): {}",
                    config
                        .data_dir
                        .join(trailwatch::auth::ADMIN_TOKEN_FILE)
                        .display(),
                    server.admin_token
                );
            }
            match server.local_addr() {
                Ok(addr) => {
                    tracing::info!("listening on http://{addr}");
                    if let Some(code) = &server.setup_code {
                        println!(
                            "No users yet. Create the first admin within 24 hours at \
                             (one use only): http://{addr}/setup?code={code}"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "no local address"),
            }
            match server.serve(shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Emit(args) => match trailwatch::emit::emit(args, file).await {
            Ok(receipt) => {
                println!("stored as seq {}", receipt.first_seq);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Import(args) => {
            // A progress line only where someone watches; in logs it would be noise.
            let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let mut progress = |done: u64, total: u64| {
                if tty {
                    eprint!("\r{}", trailwatch::import::progress_line(done, total));
                }
            };
            let result = trailwatch::import::import(args, file, &mut progress).await;
            if tty {
                eprintln!();
            }
            match result {
                Ok(r) => {
                    let seqs = match (r.first_seq, r.last_seq) {
                        (Some(a), Some(b)) => format!(" as seqs {a} to {b}"),
                        _ => String::new(),
                    };
                    println!(
                        "imported {} events from {} files{seqs}; {} unreadable lines kept as warnings",
                        r.events, r.files, r.unreadable
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Token(args) => {
            let dir = args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
            finish(trailwatch::auth::tokens::cli(&dir, &args.command))
        }
        Command::User(args) => {
            let dir = args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
            let mut stdin = std::io::stdin().lock();
            finish(trailwatch::auth::users::cli(
                &dir,
                &args.command,
                &mut stdin,
            ))
        }
        Command::Verify(args) => {
            let dir = args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
            let path = dir.join(DB_FILE);
            // A progress line only where someone watches; in logs it would be noise.
            let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let total = if tty {
                trailwatch::store::stored_count(&path).unwrap_or(0)
            } else {
                0
            };
            let mut progress = |n: u64| {
                if tty {
                    eprint!("\r{}", trailwatch::store::progress_bar(n, total));
                }
            };
            use trailwatch::store::checkpoint;
            let key_path = args
                .public_key
                .clone()
                .unwrap_or_else(|| dir.join(checkpoint::PUBLIC_KEY_FILE));
            let checkpoints = {
                let log = args
                    .checkpoints
                    .clone()
                    .unwrap_or_else(|| dir.join(checkpoint::LOG_FILE));
                match checkpoint::trusted(&log, &key_path, args.checkpoints.is_some()) {
                    Ok(c) => c,
                    Err(e) => {
                        println!("checkpoints UNTRUSTED: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            };
            // The same key checks the signed retention records.
            let key = checkpoint::read_public_key(&key_path).ok();
            match verify_path(&path, &checkpoints, key.as_ref(), &mut progress) {
                Ok(report) => {
                    if tty {
                        // Clear the progress line before the verdict.
                        eprint!("\r{:width$}\r", "", width = 60);
                    }
                    match report.first_break {
                        None => {
                            println!(
                                "chain OK: {} events, head seq {} hash {}; {} signed checkpoints match; \
                                 {} events removed by signed retention",
                                report.checked, report.head_seq, report.head_hash, report.checkpoints,
                                report.pruned
                            );
                            ExitCode::SUCCESS
                        }
                        Some(b) => {
                            println!(
                                "chain BROKEN at seq {}: {:?}: {} ({} events verified before it)",
                                b.seq, b.fault, b.detail, report.checked
                            );
                            ExitCode::FAILURE
                        }
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

#[cfg(not(feature = "ssr"))]
fn main() {
    // The binary is built with the `ssr` feature; the library alone is the WASM client.
}

/// Prints what a management command produced, or its error; the exit code says which.
#[cfg(feature = "ssr")]
fn finish(result: Result<String, impl std::fmt::Display>) -> std::process::ExitCode {
    match result {
        Ok(out) => {
            print!("{out}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
