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
        /// Also trust the CA certificates in this PEM file for an `https://` server whose
        /// certificate a private CA signed (the public CAs are trusted anyway).
        #[arg(long, env = "TIDINGS_CA_FILE")]
        ca_file: Option<PathBuf>,
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
        /// Device id (default: none; with --e2ee, `cli-send`).
        #[arg(long)]
        device: Option<String>,
        #[command(flatten)]
        e2ee: E2eeArgs,
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
        /// Also trust the CA certificates in this PEM file for an `https://` server whose
        /// certificate a private CA signed (the public CAs are trusted anyway).
        #[arg(long, env = "TIDINGS_CA_FILE")]
        ca_file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Register (or with --remove, unregister) a phone's FCM or APNs push token for the user and
    /// device: notifications reach it while the device is not connected.
    PushToken {
        #[arg(long, env = "TIDINGS_SERVER", default_value = DEFAULT_SERVER)]
        server: String,
        #[arg(long, env = "TIDINGS_TOKEN")]
        token: String,
        /// Also trust the CA certificates in this PEM file for an `https://` server whose
        /// certificate a private CA signed (the public CAs are trusted anyway).
        #[arg(long, env = "TIDINGS_CA_FILE")]
        ca_file: Option<PathBuf>,
        /// The device the token belongs to.
        #[arg(long, default_value = "cli")]
        device: String,
        /// `fcm` or `apns`.
        #[arg(long)]
        provider: String,
        /// The app's bundle id (APNs topic) or package name; default: the server's.
        #[arg(long, default_value = "")]
        app_id: String,
        /// An APNs token of a development build (the sandbox environment).
        #[arg(long)]
        sandbox: bool,
        /// The device's language (a BCP 47 tag).
        #[arg(long, default_value = "")]
        locale: String,
        /// Remove the token instead.
        #[arg(long)]
        remove: bool,
        /// The token the platform gave the app (APNs: hex).
        push_token: String,
    },
    /// Measure a server: load scenarios that also check the delivery contract.
    Bench(tidings_bench::BenchArgs),
    /// Print one JSON line per message received, acknowledging each once printed.
    Listen {
        #[arg(long, env = "TIDINGS_SERVER", default_value = DEFAULT_SERVER)]
        server: String,
        #[arg(long, env = "TIDINGS_TOKEN")]
        token: String,
        /// Also trust the CA certificates in this PEM file for an `https://` server whose
        /// certificate a private CA signed (the public CAs are trusted anyway).
        #[arg(long, env = "TIDINGS_CA_FILE")]
        ca_file: Option<PathBuf>,
        /// Device id: the server remembers what this device has acknowledged.
        #[arg(long, default_value = "cli")]
        device: String,
        /// Also join this chatroom and print its items (repeatable).
        #[arg(long)]
        chatroom: Vec<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        e2ee: E2eeArgs,
    },
    /// Copy a SQLite store to FILE as one snapshot, while a server runs on it and writes.
    Backup {
        /// The file to write (refused if it exists, unless --force).
        #[arg(long)]
        to: PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Put a backup made by `tidings backup` back as the SQLite store, with no server running
    /// on it.
    Restore {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
        /// Replace the database if it exists.
        #[arg(long)]
        force: bool,
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

/// The SQLite database `backup` and `restore` work on, named as `serve` names it.
/// End-to-end encryption for `send` and `listen` (docs/e2ee.md).
#[derive(clap::Args, Debug)]
struct E2eeArgs {
    /// Encrypt end to end (MLS): `send` encrypts for the conversation's devices (making its
    /// group on first use), `listen` publishes this device's key packages and decrypts.
    #[arg(long)]
    e2ee: bool,
    /// Where the device's MLS state is kept (one file per user and device; default: `tidings`
    /// under the user's data home, `$XDG_DATA_HOME` or `~/.local/share`).
    #[arg(long, env = "TIDINGS_STATE_DIR", requires = "e2ee")]
    state_dir: Option<PathBuf>,
}

impl E2eeArgs {
    /// The state directory, when end-to-end encryption is on.
    fn state_dir(&self) -> anyhow::Result<Option<PathBuf>> {
        if !self.e2ee {
            return Ok(None);
        }
        if let Some(dir) = &self.state_dir {
            return Ok(Some(dir.clone()));
        }
        let home = std::env::var_os("XDG_DATA_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .ok_or_else(|| anyhow::anyhow!("no data home: give --state-dir"))?;
        Ok(Some(home.join("tidings")))
    }
}

#[derive(clap::Args)]
struct DatabaseArgs {
    #[arg(long, env = "TIDINGS_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// The store, as `serve --store` names it: a SQLite file path (a PostgreSQL store is
    /// backed up with pg_dump and restored with pg_restore). Default: `tidings.db` in the data
    /// directory.
    #[arg(long, env = "TIDINGS_STORE")]
    store: Option<String>,
}

impl DatabaseArgs {
    fn path(&self) -> anyhow::Result<PathBuf> {
        tidings_server::backup::database(&self.data_dir, self.store.as_deref())
    }
}

fn init_logging(format: tidings_server::config::LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("TIDINGS_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Escape codes only for a person at a terminal, not into a file or a journal.
        tidings_server::config::LogFormat::Text => {
            builder.with_ansi(std::io::stderr().is_terminal()).init()
        }
        tidings_server::config::LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

/// jemalloc rather than the C library's allocator: 17% less CPU per message at full load, for
/// about 3% more memory per idle connection (docs/performance.md, "The allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve`'s settings are resolved first: they say how it logs.
    let serve_config = match &cli.command {
        Command::Serve(raw) => match raw.as_ref().clone().resolve() {
            Ok(config) => Some(config),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    init_logging(
        serve_config
            .as_ref()
            .map(|c| c.log_format)
            .unwrap_or_default(),
    );
    // The open-loop load generator runs on one thread: spread over several, its many small
    // wake-ups cost more CPU than the server it measures, on the same machine.
    let single_threaded = matches!(
        &cli.command,
        Command::Bench(b) if matches!(b.scenario, tidings_bench::Scenario::Rate { .. })
    );
    let mut builder = if single_threaded {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if let Some(config) = &serve_config {
            builder.worker_threads(config.worker_threads);
        }
        builder
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = serve_config
        .as_ref()
        .is_some_and(|c| c.log_format == tidings_server::config::LogFormat::Json);
    match runtime.block_on(run(cli.command, serve_config)) {
        Ok(()) => ExitCode::SUCCESS,
        // In JSON, the reason the server stopped is a log line like the others.
        Err(e) if json => {
            tracing::error!(error = format!("{e:#}"), "stopped on an error");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, serve_config: Option<tidings_server::Config>) -> anyhow::Result<()> {
    match command {
        Command::Serve(_) => match serve_config {
            Some(config) => serve(config).await,
            None => anyhow::bail!("serve's settings were not resolved"),
        },
        Command::Bench(args) => {
            // A load opens many connections.
            tidings_server::raise_open_file_limit();
            let host = tidings_bench::Host {
                credentials: tidings_server::credentials::load,
                tls: cli::tls_settings,
            };
            tidings_bench::run(args, host).await
        }
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
            ca_file,
            to,
            group,
            chatroom,
            msg_type,
            json,
            device,
            e2ee,
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
            let state_dir = e2ee.state_dir()?;
            let device = device
                .unwrap_or_else(|| if state_dir.is_some() { "cli-send" } else { "" }.to_string());
            cli::send(
                &server,
                &token,
                ca_file.as_deref(),
                &target,
                &msg_type,
                content,
                json,
                &device,
                state_dir.as_deref(),
            )
            .await
        }
        Command::Listen {
            server,
            token,
            ca_file,
            device,
            chatroom,
            json,
            e2ee,
        } => {
            let ca_file = ca_file.as_deref();
            let state_dir = e2ee.state_dir()?;
            cli::listen(
                &server,
                &token,
                ca_file,
                &device,
                &chatroom,
                json,
                state_dir.as_deref(),
            )
            .await
        }
        Command::Conversations {
            server,
            token,
            ca_file,
            json,
        } => cli::conversations(&server, &token, ca_file.as_deref(), json).await,
        Command::PushToken {
            server,
            token,
            ca_file,
            device,
            provider,
            app_id,
            sandbox,
            locale,
            remove,
            push_token,
        } => {
            let push = tidings_client::PushToken {
                provider,
                token: push_token,
                app_id,
                sandbox,
                locale,
            };
            cli::push_token(&server, &token, ca_file.as_deref(), &device, &push, remove).await
        }
        Command::Backup {
            to,
            database,
            force,
        } => {
            let db = database.path()?;
            let copied = tokio::task::spawn_blocking(move || {
                tidings_server::backup::backup(&db, &to, force).map(|c| (c, db, to))
            })
            .await??;
            let (copied, db, to) = copied;
            println!(
                "backed up {} to {} (schema version {}, {} pages)",
                db.display(),
                to.display(),
                copied.version,
                copied.pages
            );
            Ok(())
        }
        Command::Restore {
            from,
            database,
            force,
        } => {
            let db = database.path()?;
            let version = tidings_server::backup::restore(&from, &db, force)?;
            println!(
                "restored {} to {} (schema version {version})",
                from.display(),
                db.display()
            );
            Ok(())
        }
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

async fn serve(config: tidings_server::Config) -> anyhow::Result<()> {
    // Created (and printed) before anything else can fail, so that a first start that fails
    // later, as on a port in use, still shows them: they are never printed again.
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let (credentials, created) = tidings_server::credentials::load_or_create(&config.data_dir)?;
    if created {
        println!(
            "created app credentials in {}",
            tidings_server::credentials::path(&config.data_dir).display()
        );
        println!("  appKey:    {}", credentials.app_key);
        println!("  appSecret: {}", credentials.app_secret);
    }
    // Held while serving: `tidings restore` refuses to replace the database meanwhile, and a
    // second server on the same SQLite file is refused.
    let _lock = match &config.store {
        tidings_server::StoreSetting::DataDir => Some(tidings_server::backup::lock(
            &config.data_dir.join(tidings_server::DB_FILE),
        )?),
        tidings_server::StoreSetting::Sqlite(path) => Some(tidings_server::backup::lock(path)?),
        tidings_server::StoreSetting::Postgres(_) => None,
    };
    // Before the engine starts: metric handles made without the recorder record nothing.
    let metrics = match config.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!(
                    "binding the metrics address {addr} (metrics_listen; `off` turns metrics off)"
                )
            })?;
            Some((listener, tidings_server::metrics::install()?))
        }
        None => None,
    };
    // Each connection holds one file descriptor; keep a margin for the database and listeners.
    let files = tidings_server::raise_open_file_limit();
    tracing::info!(
        open_files = files,
        connections = files.saturating_sub(64),
        "connection capacity from the open-file limit"
    );
    let mut running = start(&config).await?;
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some((listener, metrics)) = metrics {
        let addr = listener.local_addr()?;
        println!("metrics on http://{addr}/metrics");
        let engine = running.engine.clone();
        tokio::spawn(async move {
            let stopped = async {
                let _ = metrics_stopped.await;
            };
            if let Err(e) = tidings_server::metrics::serve(listener, metrics, engine, stopped).await
            {
                tracing::error!(error = %e, "the metrics listener failed");
            }
        });
    }
    if let Some(health) = running.health_addr {
        println!("tidings health checks on http://{health}/healthz");
    }
    // Installed before the lines below: whoever reads them may signal at once, and a signal
    // that came before its handler would kill the process instead of stopping it.
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    // SIGHUP reads the TLS certificate and key again (without TLS it is ignored).
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    // Last: whoever waits for this line (tests, the bench) has read the ones above.
    println!("tidings listening on {}", running.url());
    // The store's Debug shows a PostgreSQL URL's scheme only: it may hold a password.
    tracing::info!(addr = %running.addr, data_dir = %config.data_dir.display(), store = ?config.store, "serving");

    let tls = running.tls.clone();
    let reloading = async move {
        while sighup.recv().await.is_some() {
            match &tls {
                Some(tls) => tls.reload_and_log("SIGHUP"),
                None => tracing::info!("SIGHUP: nothing to reload (TLS is off)"),
            }
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
        _ = reloading => {}
        r = running.wait() => return r,
    }
    let _ = stop_metrics.send(());
    running.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}
