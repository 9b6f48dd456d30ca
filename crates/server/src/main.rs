//! `tidings`: the server and its command-line tools in one binary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tidings_server::cli::{self, DEFAULT_SERVER};
use tidings_server::{RawConfig, start};

#[derive(Parser)]
#[command(
    name = "tidings",
    version,
    about = "A self-hosted instant-messaging server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (no configuration needed: 127.0.0.1:9091, data in ./data).
    Serve(Box<RawConfig>),
    /// Mint a user token offline from the data directory's credentials; prints only the token.
    /// The user is recorded in the store first (never then given to a self-registered
    /// account); a self-registered account's id is refused.
    Token {
        user_id: String,
        #[arg(long, env = "TIDINGS_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
        /// The store the server runs on, as `serve --store` names it (the user is recorded and
        /// its token version read there). Default: `tidings.db` in the data directory.
        #[arg(long, env = "TIDINGS_STORE")]
        store: Option<String>,
        /// Token lifetime in seconds (default 30 days).
        #[arg(long)]
        ttl_secs: Option<u64>,
    },
    /// Send one message and print the server's answer.
    Send {
        #[arg(long, env = "TIDINGS_SERVER", default_value = DEFAULT_SERVER)]
        server: String,
        #[arg(long, env = "TIDINGS_TOKEN")]
        token: String,
        /// The recipient's user id.
        #[arg(long, required_unless_present_any = ["group", "chatroom"], conflicts_with_all = ["group", "chatroom"])]
        to: Option<String>,
        /// Send to this group instead (the sender must be a member).
        #[arg(long, conflicts_with = "chatroom")]
        group: Option<String>,
        /// Send to this chatroom instead (joining it for the message).
        #[arg(long)]
        chatroom: Option<String>,
        /// Message type; with a type other than text, TEXT must be the JSON content.
        #[arg(long = "type", default_value = "text")]
        msg_type: String,
        /// Speak the JSON encoding instead of protobuf.
        #[arg(long)]
        json: bool,
        /// The text (or, with --type, the JSON content).
        text: String,
    },
    /// Print the user's conversation list, one JSON line per conversation (pinned first, then
    /// newest), with unread counts.
    Conversations {
        #[arg(long, env = "TIDINGS_SERVER", default_value = DEFAULT_SERVER)]
        server: String,
        #[arg(long, env = "TIDINGS_TOKEN")]
        token: String,
        #[arg(long)]
        json: bool,
    },
    /// Measure a server: load scenarios that also check the delivery contract.
    Bench(tidings_server::bench::BenchArgs),
    /// Print one JSON line per message received, acknowledging each once printed.
    Listen {
        #[arg(long, env = "TIDINGS_SERVER", default_value = DEFAULT_SERVER)]
        server: String,
        #[arg(long, env = "TIDINGS_TOKEN")]
        token: String,
        /// Device id: the server remembers what this device has acknowledged.
        #[arg(long, default_value = "cli")]
        device: String,
        /// Also join this chatroom and print its items (repeatable).
        #[arg(long)]
        chatroom: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Manage the operators who sign in to the admin console (`/admin`).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
        #[arg(long, env = "TIDINGS_DATA_DIR", default_value = "data", global = true)]
        data_dir: PathBuf,
        /// The store the server runs on, as `serve --store` names it. Default: `tidings.db` in
        /// the data directory.
        #[arg(long, env = "TIDINGS_STORE", global = true)]
        store: Option<String>,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Add an operator, or set a new password for one (ending their sessions). The password
    /// is typed twice at the terminal, or read from stdin's first line with --password-stdin.
    Add {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove an operator and end their sessions.
    Remove { name: String },
    /// List the operators.
    List,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TIDINGS_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    // The open-loop load generator runs on one thread: spread over several, its many small
    // wake-ups cost more CPU than the server it measures, on the same machine.
    let single_threaded = matches!(
        &cli.command,
        Command::Bench(b) if matches!(b.scenario, tidings_server::bench::Scenario::Rate { .. })
    );
    let mut builder = if single_threaded {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(raw) => serve(*raw).await,
        Command::Bench(args) => tidings_server::bench::run(args).await,
        Command::Token {
            user_id,
            data_dir,
            store,
            ttl_secs,
        } => {
            let token = cli::mint_token_in(
                &data_dir,
                store.as_deref(),
                &user_id,
                ttl_secs.map(Duration::from_secs),
            )
            .await?;
            println!("{token}");
            Ok(())
        }
        Command::Send {
            server,
            token,
            to,
            group,
            chatroom,
            msg_type,
            json,
            text,
        } => {
            let content = if msg_type == "text" {
                serde_json::json!({ "text": text }).to_string()
            } else {
                text
            };
            let target = match (to, group, chatroom) {
                (Some(user), _, _) => cli::Target::User(user),
                (None, Some(group), _) => cli::Target::Group(group),
                (None, None, Some(room)) => cli::Target::Chatroom(room),
                (None, None, None) => anyhow::bail!("give --to, --group or --chatroom"),
            };
            cli::send(&server, &token, &target, &msg_type, content, json).await
        }
        Command::Listen {
            server,
            token,
            device,
            chatroom,
            json,
        } => cli::listen(&server, &token, &device, &chatroom, json).await,
        Command::Conversations {
            server,
            token,
            json,
        } => cli::conversations(&server, &token, json).await,
        Command::Admin {
            command,
            data_dir,
            store,
        } => admin(command, &data_dir, store.as_deref()).await,
    }
}

async fn admin(
    command: AdminCommand,
    data_dir: &std::path::Path,
    store: Option<&str>,
) -> anyhow::Result<()> {
    use tidings_server::operators;
    let place = operators::Place { data_dir, store };
    match command {
        AdminCommand::Add {
            name,
            password_stdin,
        } => {
            let password = operators::read_password(&name, password_stdin)?;
            if operators::add(&place, &name, password).await? {
                println!("added operator {name}");
            } else {
                println!("set a new password for operator {name}; their sessions ended");
            }
        }
        AdminCommand::Remove { name } => {
            if !operators::remove(&place, &name).await? {
                anyhow::bail!("no operator {name}");
            }
            println!("removed operator {name}");
        }
        AdminCommand::List => {
            for (name, created) in operators::list(&place).await? {
                println!("{name}\t{created}");
            }
        }
    }
    Ok(())
}

async fn serve(raw: RawConfig) -> anyhow::Result<()> {
    let config = raw.resolve()?;
    // Each connection holds one file descriptor; keep a margin for the database and listeners.
    let files = tidings_server::bench::raise_open_file_limit();
    tracing::info!(
        open_files = files,
        connections = files.saturating_sub(64),
        "connection capacity from the open-file limit"
    );
    let mut running = start(&config).await?;
    if running.created_credentials {
        // Printed once, at the first start; afterwards they are in the data directory only.
        println!(
            "created app credentials in {}",
            tidings_server::credentials::path(&config.data_dir).display()
        );
        println!("  appKey:    {}", running.credentials.app_key);
        println!("  appSecret: {}", running.credentials.app_secret);
    }
    println!("tidings listening on http://{}", running.addr);
    // The store's Debug shows a PostgreSQL URL's scheme only: it may hold a password.
    tracing::info!(addr = %running.addr, data_dir = %config.data_dir.display(), store = ?config.store, "serving");

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = sigterm.recv() => {}
        r = running.wait() => return r,
    }
    running.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}
