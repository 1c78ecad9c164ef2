//! The command line, the top layer: clap's types and the config file (`config`), and the
//! commands `serve`, `emit`, `import`, `verify`, `token`, `user`, `backup` and `migrate`. The only code that knows
//! clap; it maps its arguments onto the options of the layers below. Server build only.

pub mod accounts;
pub mod backup;
pub mod config;
pub mod emit;
pub mod import;
pub mod migrate;

use crate::auth::TokenOrigin;
use crate::site::{shutdown_signal, Server};
use crate::store::{verify_path, DB_FILE};
use clap::Parser;
use config::{Cli, Command, FileConfig};
use std::process::ExitCode;

/// Parses the command line and runs the command it names; the process's exit code.
pub async fn run() -> ExitCode {
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
            let config = config::serve_config(args, file);
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
                        .join(crate::auth::ADMIN_TOKEN_FILE)
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
        Command::Emit(args) => match emit::emit(args, file).await {
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
                    eprint!("\r{}", import::progress_line(done, total));
                }
            };
            let result = import::import(args, file, &mut progress).await;
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
            let dir = config::data_dir(args.data_dir, &file);
            let url = config::database_url(args.database, &file);
            finish(accounts::token(&accounts_of(dir, url), &args.command).await)
        }
        Command::User(args) => {
            let dir = config::data_dir(args.data_dir, &file);
            let url = config::database_url(args.database, &file);
            let mut stdin = std::io::stdin().lock();
            let accounts = accounts_of(dir, url);
            finish(accounts::user(&accounts, &args.command, &mut stdin).await)
        }
        Command::Backup(args) => {
            let dir = config::data_dir(args.data_dir, &file);
            let result = backup::backup(&dir, &args.dest, &mut |name| eprintln!("copying {name}"));
            match result {
                Ok(report) => {
                    let bytes: u64 = report.files.iter().map(|(_, b)| b).sum();
                    println!(
                        "backed up {} files ({bytes} bytes) to {}; restore by serving that directory (--data-dir)",
                        report.files.len(),
                        args.dest.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Verify(args) => {
            let dir = config::data_dir(args.data_dir, &file);
            if let Some(url) = &args.database {
                let key = args
                    .public_key
                    .clone()
                    .unwrap_or_else(|| dir.join(crate::store::checkpoint::PUBLIC_KEY_FILE));
                return migrate::verify_database(url, &key).await;
            }
            let path = dir.join(DB_FILE);
            // A progress line only where someone watches; in logs it would be noise.
            let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let total = if tty {
                crate::store::stored_count(&path).unwrap_or(0)
            } else {
                0
            };
            let mut progress = |n: u64| {
                if tty {
                    eprint!("\r{}", crate::store::progress_bar(n, total));
                }
            };
            use crate::store::checkpoint;
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
            let result = verify_path(&path, &checkpoints, key.as_ref(), &mut progress);
            if tty {
                // Clear the progress line before the verdict.
                eprint!("\r{:width$}\r", "", width = 60);
            }
            verdict(result)
        }
        Command::Migrate(args) => {
            let dir = config::data_dir(args.data_dir, &file);
            migrate::migrate(&dir, &args.to).await
        }
    }
}

/// Prints a verification's verdict; exits 0 for a whole chain, 1 for a broken one, 2 when it
/// could not be checked.
fn verdict(result: Result<crate::store::VerifyReport, impl std::fmt::Display>) -> ExitCode {
    match result {
        Ok(report) => match report.first_break {
            None => {
                println!(
                    "chain OK: {} events, head seq {} hash {}; {} signed checkpoints match; \
                     {} events removed by signed retention",
                    report.checked,
                    report.head_seq,
                    report.head_hash,
                    report.checkpoints,
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
        },
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Prints what a management command produced, or its error; the exit code says which.
/// The users and tokens a command manages: the cluster's, when it has a database, else the
/// data directory's.
fn accounts_of(dir: std::path::PathBuf, url: Option<String>) -> accounts::Accounts {
    match url {
        Some(url) => accounts::Accounts::Database(url),
        None => accounts::Accounts::Dir(dir),
    }
}

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
