//! `keyfill serve`, the local automation API, and `keyfill api`: its tokens and its document.

use super::{GlobalArgs, interrupted, print_json};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use keyfill_formats::printable;
use keyfill_station::api::token::{NewToken, Scope, TokenName};
use keyfill_station::api::{self, ApiState, Authorise, C2Target};
use keyfill_station::custody::Operation;
use keyfill_station::db::api_tokens::{self, StoredToken};
use keyfill_station::home::StationHome;
use keyfill_station::line::event::EventSink;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
pub struct ServeArgs {
    /// Address and port to listen on. Anything but a loopback address needs TLS.
    #[arg(long, default_value = "127.0.0.1:8480", value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// Run this line (docs/line.md) and take provisioning jobs for its lanes; lanes with
    /// `api = true` take labels from the API only.
    #[arg(long, value_name = "FILE")]
    line: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM, leaf first).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The MQTT broker for rotation runs.
    #[arg(long, value_name = "URL")]
    broker: Option<String>,
    /// C2's HTTPS gateway for export runs.
    #[arg(long, value_name = "URL")]
    c2: Option<String>,
    /// PEM file of the CA that signed C2's certificate.
    #[arg(long, value_name = "FILE")]
    c2_ca: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum ApiCommand {
    /// The API's bearer tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Print the API's OpenAPI 3.1 document (as served at /openapi.json).
    Openapi,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a token: printed once, only its hash is kept.
    Create {
        /// A name for who uses it (the MES, a line controller), in logs and the event log.
        #[arg(long)]
        name: String,
        /// What it may do; repeat, or separate with commas.
        #[arg(long, required = true, value_delimiter = ',', value_parser = scope_parser())]
        scope: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List the tokens (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: refused from the next request on.
    Revoke { name: String },
}

fn scope_parser() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(Scope::ALL.map(Scope::as_str))
}

pub async fn api(global: &GlobalArgs, home: &StationHome, command: ApiCommand) -> Result<()> {
    match command {
        ApiCommand::Openapi => {
            print!("{}", api::doc::document());
            Ok(())
        }
        ApiCommand::Token { command: TokenCommand::Create { name, scope, json } } => {
            let name = TokenName::parse(&name).context("--name")?;
            let mut scopes: Vec<Scope> = scope.iter().filter_map(|s| Scope::parse(s)).collect();
            scopes.sort();
            scopes.dedup();
            let station = global.station_for(home, Operation::ManageOperators, name.as_str()).await?;
            let pool = station.inventory.pool();
            if api_tokens::find_by_name(pool, &name).await?.is_some() {
                bail!("a token named {name} exists already (revoked tokens keep their names): choose another name");
            }
            let token = NewToken::generate()?;
            let row = StoredToken {
                id: token.id.clone(),
                name: name.clone(),
                scopes: scopes.clone(),
                secret_hash: token.secret_hash.clone(),
                created_at: keyfill_station::db::now_millis(),
                created_by: station.actor.operator.clone(),
                revoked_at: None,
                last_used_at: None,
            };
            let mut tx = pool.begin().await?;
            api_tokens::insert(&mut tx, &row).await?;
            let detail = format!("API token {name} (id {}), scopes {}", token.id, Scope::join(&scopes));
            keyfill_station::db::events::record(&mut tx, &station.actor, None, "api_token_created", &detail).await?;
            tx.commit().await?;
            station.inventory.close().await;
            if json {
                print_json(&serde_json::json!({"name": name, "scopes": scopes, "token": token.text.as_str()}))?;
            } else {
                println!("{}", token.text.as_str());
                eprintln!(
                    "token {name} made with scopes {}: it is shown this once; give it to its user as \
                     `Authorization: Bearer …`",
                    Scope::join(&scopes)
                );
            }
            Ok(())
        }
        ApiCommand::Token { command: TokenCommand::List { json } } => {
            global.authorise_read(home, Operation::Inspect).await?;
            let inventory = global.inventory(home).await?;
            let tokens = api_tokens::list(inventory.pool()).await?;
            inventory.close().await;
            let time = |at: Option<i64>| at.map(keyfill_station::time::rfc3339);
            if json {
                let rows: Vec<serde_json::Value> = tokens
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "name": t.name, "id": t.id, "scopes": t.scopes, "created_at": time(Some(t.created_at)),
                            "created_by": t.created_by, "last_used_at": time(t.last_used_at),
                            "revoked_at": time(t.revoked_at),
                        })
                    })
                    .collect();
                return print_json(&rows);
            }
            println!("{:<24}  {:<8}  {:<24}  {:<24}  SCOPES", "NAME", "STATE", "CREATED", "LAST USED");
            for t in &tokens {
                println!(
                    "{:<24}  {:<8}  {:<24}  {:<24}  {}",
                    t.name,
                    if t.revoked_at.is_some() { "revoked" } else { "active" },
                    keyfill_station::time::rfc3339(t.created_at),
                    time(t.last_used_at).unwrap_or_else(|| "-".into()),
                    Scope::join(&t.scopes)
                );
            }
            Ok(())
        }
        ApiCommand::Token { command: TokenCommand::Revoke { name } } => {
            let name = TokenName::parse(&name).context("the token's name")?;
            let station = global.station_for(home, Operation::ManageOperators, name.as_str()).await?;
            let mut tx = station.inventory.pool().begin().await?;
            if !api_tokens::revoke(&mut tx, &name, keyfill_station::db::now_millis()).await? {
                bail!("no active token named {name} (`keyfill api token list`)");
            }
            keyfill_station::db::events::record(
                &mut tx,
                &station.actor,
                None,
                "api_token_revoked",
                &format!("API token {name}"),
            )
            .await?;
            tx.commit().await?;
            station.inventory.close().await;
            eprintln!("token {name} revoked");
            Ok(())
        }
    }
}

pub async fn serve(global: &GlobalArgs, home: &StationHome, args: ServeArgs) -> Result<()> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(api::serve::tls_acceptor(cert, key)?),
        _ => None,
    };
    if tls.is_none() && !args.listen.ip().is_loopback() {
        bail!(
            "listening on {} without TLS would send tokens in the clear over the network: give --tls-cert and \
             --tls-key, or listen on 127.0.0.1",
            args.listen
        );
    }
    let line = args.line.as_deref().map(super::line::read_config).transpose()?;
    let (mut station, custody) = global.custody_station(home, Operation::Inspect, "api").await?;
    let operator = station.actor.operator.clone();
    let authorise: Authorise = match custody {
        Some((session, _secret)) => {
            let session = Arc::new(session);
            Arc::new(move |operation: Operation| {
                session.authorise(operation, "api").map(|_| ()).map_err(|e| e.to_string())
            })
        }
        None => Arc::new(|_| Ok(())),
    };
    if let Some(line) = &line {
        authorise(Operation::Provision)
            .map_err(|reason| anyhow::anyhow!("a line needs an operator who may provision: {reason}"))?;
        keyfill_station::line::prepare(&mut station, line).await?;
    }
    let station = Arc::new(station);
    let lanes = line.as_ref().map(|line| line.lanes.clone()).unwrap_or_default();
    let (board, inboxes) = api::jobs::JobBoard::new(&lanes);
    let jobs = Arc::new(board);
    let (events, _) = tokio::sync::broadcast::channel(api::events::BACKLOG);
    let observed_jobs = jobs.clone();
    let streamed = events.clone();
    let sink = Arc::new(
        EventSink::new(Box::new(std::io::sink()))
            .observed_by(Box::new(move |emitted| observed_jobs.observe(emitted)))
            .observed_by(Box::new(move |emitted| {
                let event =
                    api::events::StreamedEvent { id: emitted.event_id.to_owned(), json: emitted.json.to_owned() };
                // No subscriber is no error.
                let _ = streamed.send(Arc::new(event));
            })),
    );
    let c2 = args.c2.clone().map(|url| C2Target { url, ca: args.c2_ca.clone(), timeout: Duration::from_secs(30) });
    let (request_stop, stop_requested) = tokio::sync::watch::channel(None);
    let state = Arc::new(ApiState {
        station: station.clone(),
        home: home.clone(),
        operator: operator.clone(),
        authorise,
        jobs,
        runs: Arc::new(api::runs::RunBoard::new(api::runs::MAX_RUNS)),
        events,
        sink: sink.clone(),
        broker: args.broker.clone(),
        c2,
        rotation: keyfill_station::rotation::RotationSettings::default(),
        stopping: stop_requested.clone(),
    });
    let line_task = line.map(|line| {
        tokio::spawn(keyfill_station::line::run_shared(
            station.clone(),
            line,
            sink.clone(),
            stop_requested.clone(),
            inboxes,
        ))
    });
    let tcp = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (in use, or not this machine's address)", args.listen))?;
    let address = tcp.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!(
        "serving the API on {scheme}://{address} as operator {}{}; the document is at /openapi.json",
        printable(&operator),
        if lanes.is_empty() { String::new() } else { format!(", {} lane(s)", lanes.len()) }
    );
    let router = api::router(state);
    let mut stopping = stop_requested.clone();
    let shutdown = async move {
        let _ = stopping.wait_for(Option::is_some).await;
    };
    tokio::spawn(async move {
        let signal = interrupted().await;
        let _ = request_stop.send(Some(signal.to_owned()));
        interrupted().await;
        eprintln!("stopping at once, without waiting for the sessions under way");
        std::process::exit(130);
    });
    match tls {
        Some(acceptor) => {
            axum::serve(api::serve::TlsListener::new(tcp, acceptor), router).with_graceful_shutdown(shutdown).await?
        }
        None => axum::serve(tcp, router).with_graceful_shutdown(shutdown).await?,
    }
    if let Some(task) = line_task {
        let _ = task.await;
    }
    eprintln!("API stopped");
    Ok(())
}
