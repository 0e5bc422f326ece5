//! `cargo xtask <lane>`: the project's lanes, so a person finds them in one place.
//!
//! | lane | what it runs | needs |
//! |---|---|---|
//! | `fast` | the Rust tests that need no Python or Node: core, HTTP router, `chat-local` (real binary), n8n client, test kit | Rust |
//! | `aws` | the AWS adapters, handlers and Lambda binaries against the emulator | Rust, Python 3 |
//! | `browser` | `ChatClient` unit tests, the type check, the widget in headless Chromium | Rust, Node |
//! | `cdk` | `tests/cdk-check`: the CDK app synthesized offline and compared with `template.yaml` | Python 3, Node |
//! | `n8n` | the n8n workflow's code, then the workflows on a real n8n 2.8.4 with `chat-local`, the Lambda handlers on the emulator and the widget in headless Chromium | Rust, Node, Python 3 |
//! | `full` | `tests/run`: lints, formatting, clippy and every lane above (the README's test command, what CI runs) | all |
//! | `bench` | `tests/bench`: every benchmark, one table | all; release builds |
//! | `sam-build` | `infra/sam-build`: the arm64 Lambda artifacts with `sam build` | Rust, Python 3 |
//!
//! Each lane only runs the project's own scripts and cargo; installs happen in those scripts.

use std::process::{Command, ExitCode};

const LANES: [(&str, &str); 8] = [
    (
        "fast",
        "Rust tests without Python or Node (core, router, chat-local, n8n client, test kit)",
    ),
    (
        "aws",
        "AWS adapters, handlers and Lambda binaries against the emulator",
    ),
    (
        "browser",
        "ChatClient unit tests, type check, the widget in headless Chromium",
    ),
    (
        "cdk",
        "tests/cdk-check: the CDK app's synth compared with template.yaml",
    ),
    (
        "n8n",
        "the n8n workflow's code, then the workflows on a real n8n (chat-local, Lambda handlers, widget)",
    ),
    (
        "full",
        "tests/run: the whole suite (the README's test command, what CI runs)",
    ),
    (
        "bench",
        "tests/bench: every benchmark, one table (release builds)",
    ),
    ("sam-build", "infra/sam-build: the arm64 Lambda artifacts"),
];

fn main() -> ExitCode {
    let lane = std::env::args().nth(1).unwrap_or_default();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lies in the workspace");
    let steps: Vec<Vec<&str>> = match lane.as_str() {
        "fast" => vec![vec![
            "cargo",
            "test",
            "-p",
            "chat-core",
            "-p",
            "chat-http",
            "-p",
            "chat-local",
            "-p",
            "chat-n8n",
            "-p",
            "chat-testkit",
        ]],
        "aws" => vec![
            vec!["infra/tools"],
            vec!["cargo", "test", "-p", "chat-aws", "-p", "chat-functions"],
        ],
        "browser" => vec![vec!["tests/browser/run"]],
        "cdk" => vec![vec!["tests/cdk-check"]],
        "n8n" => vec![vec!["tests/n8n/run"]],
        "full" => vec![vec!["tests/run"]],
        "bench" => vec![vec!["tests/bench"]],
        "sam-build" => vec![vec!["infra/sam-build"]],
        _ => {
            eprintln!("usage: cargo xtask <lane>\n");
            for (name, what) in LANES {
                eprintln!("  {name:<10} {what}");
            }
            return ExitCode::from(2);
        }
    };
    for step in steps {
        eprintln!("==> {}", step.join(" "));
        let status = Command::new(step[0])
            .args(&step[1..])
            .current_dir(root)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => return ExitCode::from(s.code().unwrap_or(1).clamp(1, 255) as u8),
            Err(e) => {
                eprintln!("cannot run {}: {e}", step[0]);
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
