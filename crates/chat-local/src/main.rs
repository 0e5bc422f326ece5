//! `chat-local`: start the chat server on this machine. Configuration is read from `CHAT_*`
//! environment variables (see the README); logs go to stderr, and one line on stdout says
//! where the server listens, for scripts and tests.
//!
//! `chat-local agent-token --name Alex [--id a-1] [--hours 8]` prints an agent JWT instead
//! (see [`chat_local::agent_token`]); `chat-local admin redrive` queues the deliveries given up
//! after their last attempt again (see the README's Operations); `chat-local admin
//! export|erase --user <id> | --session <id>` exports or erases a person's data
//! (see [`chat_local::admin`]).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("agent-token") {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        return match chat_local::agent_token::run(&args[1..], &|k| std::env::var(k).ok(), now) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("chat-local: {e}");
                ExitCode::from(2)
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn,hyper=warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let env = |k: &str| std::env::var(k).ok();
    // More descriptors, more connections: the caps are derived from this limit.
    let open_files = chat_local::limits::raise_open_file_limit();
    let local = match chat_local::LocalConfig::from_env(&env, open_files) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chat-local: {e}");
            return ExitCode::from(2);
        }
    };
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => {}
        ["admin", "redrive"] => {
            return match chat_local::app::redrive(&local, &env).await {
                Ok(done) => {
                    println!(
                        "chat-local: {} message(s) redriven, {} dead job(s) dropped (answered meanwhile or gone)",
                        done.redriven, done.dropped
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("chat-local admin redrive: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        ["admin", "export", ref target @ ..]
            if chat_local::admin::Target::parse(target).is_some() =>
        {
            let target = chat_local::admin::Target::parse(target).expect("checked");
            return match chat_local::admin::export(&local, &env, &target).await {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("chat-local admin export: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        ["admin", "erase", ref target @ ..]
            if chat_local::admin::Target::parse(target).is_some() =>
        {
            let target = chat_local::admin::Target::parse(target).expect("checked");
            return match chat_local::admin::erase(&local, &env, &target).await {
                Ok(n) => {
                    println!("chat-local: {n} session(s) erased");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("chat-local admin erase: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {
            eprintln!(
                "usage: chat-local              start the server\n       chat-local admin redrive   queue the deliveries given up after their last attempt again\n       chat-local admin export --user <id> | --session <id>   print everything kept of a user or session (JSON)\n       chat-local admin erase --user <id> | --session <id>    erase it"
            );
            return ExitCode::from(2);
        }
    }
    let ready = |addr| {
        println!("chat-local listening on http://{addr}");
    };
    match chat_local::run(local, &env, shutdown_signal(), ready).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-local: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
