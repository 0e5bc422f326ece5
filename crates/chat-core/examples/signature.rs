//! A tiny CLI over `chat_core::signature`, so other implementations of the n8n contract (the
//! JavaScript inside `infra/n8n/chat-workflow.json`) can be checked against ours.
//!
//! ```text
//! signature sign <secret> <timestamp>                      < body   prints the X-Chat-Signature value
//! signature verify <secret> <timestamp> <signature> <now>  < body   exit 0 "ok", or 1 and the error code
//! ```
//!
//! The body is read from stdin as raw bytes: nothing is trimmed or re-encoded.

use chat_core::signature;
use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut body = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut body) {
        eprintln!("signature: cannot read the body from stdin: {e}");
        return ExitCode::from(2);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["sign", secret, timestamp] => {
            println!("{}", signature::sign(secret.as_bytes(), timestamp, &body));
            ExitCode::SUCCESS
        }
        ["verify", secret, timestamp, sig, now] => {
            let Ok(now) = now.parse::<i64>() else {
                eprintln!("signature: <now> must be unix seconds");
                return ExitCode::from(2);
            };
            match signature::verify(secret.as_bytes(), Some(timestamp), Some(sig), &body, now) {
                Ok(()) => {
                    println!("ok");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("{}", e.code());
                    ExitCode::from(1)
                }
            }
        }
        _ => {
            eprintln!(
                "usage: signature sign <secret> <timestamp> < body\n       \
                 signature verify <secret> <timestamp> <signature> <now> < body"
            );
            ExitCode::from(2)
        }
    }
}
