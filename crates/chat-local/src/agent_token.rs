//! `chat-local agent-token --name Alex [--id a-1] [--hours 8]`: prints an agent JWT (HS256
//! with `CHAT_AUTH_JWT_SECRET`, `role: "agent"`, `sub`, `name`, `exp`) for the agent console,
//! so a team can try agents on this machine without an identity provider.

use serde_json::json;

/// What the subcommand was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTokenArgs {
    pub name: String,
    pub id: String,
    pub hours: u64,
}

/// Why no token was printed; the text is for the terminal and never holds the secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AgentTokenError {
    #[error(
        "usage: chat-local agent-token --name <name, 1–80 characters> [--id <agent id>] [--hours <1–720>]"
    )]
    Usage,
    #[error(
        "CHAT_AUTH_JWT_SECRET is not set: set it (the same value as the server's) to sign agent tokens"
    )]
    NoSecret,
}

impl AgentTokenArgs {
    /// Reads the arguments after `agent-token`. Without `--id`, the id is made from the name.
    pub fn parse(args: &[String]) -> Result<Self, AgentTokenError> {
        let (mut name, mut id, mut hours) = (None, None, 8u64);
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().ok_or(AgentTokenError::Usage)?;
            match flag.as_str() {
                "--name" => name = Some(value.trim().to_string()),
                "--id" => id = Some(value.trim().to_string()),
                "--hours" => {
                    hours = value
                        .parse()
                        .ok()
                        .filter(|h| (1..=720).contains(h))
                        .ok_or(AgentTokenError::Usage)?
                }
                _ => return Err(AgentTokenError::Usage),
            }
        }
        let name = name.ok_or(AgentTokenError::Usage)?;
        let chars = name.chars().count();
        if !(1..=chat_core::auth::MAX_AGENT_NAME_CHARS).contains(&chars)
            || name.chars().any(char::is_control)
        {
            return Err(AgentTokenError::Usage);
        }
        let id = match id {
            Some(id) if !id.is_empty() && id.len() <= 256 => id,
            Some(_) => return Err(AgentTokenError::Usage),
            None => {
                let slug: String = name
                    .to_lowercase()
                    .chars()
                    .map(|c| if c.is_alphanumeric() { c } else { '-' })
                    .collect();
                format!("agent-{slug}")
            }
        };
        Ok(Self { name, id, hours })
    }

    /// The signed token, valid from `now_secs` for `hours`.
    pub fn sign(&self, secret: &str, now_secs: i64) -> String {
        let claims = json!({
            "sub": self.id,
            "name": self.name,
            "role": "agent",
            "iat": now_secs,
            "exp": now_secs + self.hours as i64 * 3600,
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("HS256 signing cannot fail")
    }
}

/// Runs the subcommand: the token on stdout, or why not.
pub fn run(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    now_secs: i64,
) -> Result<String, AgentTokenError> {
    let a = AgentTokenArgs::parse(args)?;
    let secret = env("CHAT_AUTH_JWT_SECRET")
        .filter(|s| !s.is_empty())
        .ok_or(AgentTokenError::NoSecret)?;
    Ok(a.sign(&secret, now_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_are_checked() {
        let a = AgentTokenArgs::parse(&args(&["--name", "Alex Doe"])).unwrap();
        assert_eq!((a.id.as_str(), a.hours), ("agent-alex-doe", 8));
        let a = AgentTokenArgs::parse(&args(&["--name", "Sam", "--id", "a-2", "--hours", "1"]))
            .unwrap();
        assert_eq!((a.name.as_str(), a.id.as_str(), a.hours), ("Sam", "a-2", 1));
        for bad in [
            &[][..],
            &["--name"][..],
            &["--name", ""][..],
            &["--name", "x", "--hours", "0"][..],
            &["--name", "x", "--colour", "red"][..],
        ] {
            assert_eq!(
                AgentTokenArgs::parse(&args(bad)),
                Err(AgentTokenError::Usage),
                "{bad:?}"
            );
        }
        let long = "x".repeat(81);
        assert!(AgentTokenArgs::parse(&args(&["--name", &long])).is_err());
        let no_secret = run(&args(&["--name", "Alex"]), &|_| None, 0);
        assert_eq!(no_secret, Err(AgentTokenError::NoSecret));
    }
}
