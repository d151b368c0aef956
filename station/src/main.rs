//! `keyfill`: the station command line.

mod cli;

use std::process::ExitCode;

// See the workspace manifest: rows are made on the database's worker thread and freed on
// another, which glibc's allocator serialises.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(format: cli::LogFormat) {
    // Each audit entry is logged with its id (target `keyfill_audit`): in JSON logs, for a log
    // collector to match to `keyfill audit export`; not among a person's messages.
    let default = match format {
        cli::LogFormat::Text => "warn,keyfill_station=info",
        cli::LogFormat::Json => "warn,keyfill_station=info,keyfill_audit=info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYFILL_LOG").unwrap_or_else(|_| default.into());
    // Colours only for a person at a terminal: a journal or a log file gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    match format {
        cli::LogFormat::Text => builder.init(),
        cli::LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match cli::Cli::parse_with_config() {
        Ok(cli) => cli,
        Err(error) => {
            eprintln!("error: {}", keyfill_formats::printable(&error.to_string()));
            eprintln!("  what to do: correct the file (`keyfill config paths` lists the files read)");
            return ExitCode::from(2);
        }
    };
    init_logging(cli.log_format());
    match cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Errors may quote outside text (a name, a device's or C2's message).
            eprintln!("error: {}", keyfill_formats::printable(&error.to_string()));
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {}", keyfill_formats::printable(&cause.to_string()));
            }
            if let Some(advice) = cli::advice(&error) {
                eprintln!("  what to do: {advice}");
            }
            match error.downcast_ref::<cli::ScanFailure>() {
                Some(failure) => ExitCode::from(failure.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}
