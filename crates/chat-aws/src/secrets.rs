//! Secrets from SSM Parameter Store, the production alternative to plain environment
//! variables (which anyone allowed to read the function's configuration can see).
//!
//! Each secret variable `X` (`CHAT_WEBHOOK_SECRET`, `CHAT_SESSION_SECRET`,
//! `CHAT_AUTH_JWT_SECRET`) may instead be named by `X_PARAM`, the name of a `SecureString`
//! parameter. All named parameters are read once per cold start in one `GetParameters` call
//! with decryption; the values then stand in for `X`. A parameter that is missing, empty or
//! unreadable fails the cold start with an error naming the parameter (and its variable),
//! never a value.
//!
//! Parameter Store rather than Secrets Manager: standard parameters cost nothing (a secret in
//! Secrets Manager costs per month and per 10,000 calls), one `GetParameters` reads up to ten of
//! them, and nothing here needs Secrets Manager's managed rotation (the webhook secret is shared
//! with n8n and rotated by hand on both sides).

use std::collections::HashMap;

/// The secret variables that may come from Parameter Store.
pub const SECRET_VARIABLES: [&str; 3] = [
    "CHAT_WEBHOOK_SECRET",
    "CHAT_SESSION_SECRET",
    "CHAT_AUTH_JWT_SECRET",
];

/// A secret to read from Parameter Store: its variable and the parameter's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The secret variable, e.g. `CHAT_WEBHOOK_SECRET`.
    pub variable: &'static str,
    /// The variable naming the parameter, e.g. `CHAT_WEBHOOK_SECRET_PARAM`.
    pub param_variable: String,
    /// The parameter's name (or ARN), e.g. `/chat/prod/webhook-secret`.
    pub parameter: String,
}

/// Why the secrets could not be read. Names parameters and variables, never values.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{variable} and {param_variable} are both set; set one of them")]
    Ambiguous {
        variable: &'static str,
        param_variable: String,
    },
    #[error("SSM parameter {parameter} ({param_variable}) does not exist")]
    Missing {
        parameter: String,
        param_variable: String,
    },
    #[error("SSM parameter {parameter} ({param_variable}) is empty")]
    Empty {
        parameter: String,
        param_variable: String,
    },
    #[error("SSM parameters {parameters} could not be read: {error}")]
    Unreadable { parameters: String, error: String },
}

impl SecretsError {
    /// The parameter(s) the error is about, for the log line.
    pub fn parameter(&self) -> String {
        match self {
            Self::Ambiguous { param_variable, .. } => param_variable.clone(),
            Self::Missing { parameter, .. } | Self::Empty { parameter, .. } => parameter.clone(),
            Self::Unreadable { parameters, .. } => parameters.clone(),
        }
    }
}

/// The secrets the environment says to read from Parameter Store (none: plain variables).
pub fn wanted(env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Wanted>, SecretsError> {
    let set = |k: &str| {
        env(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let mut out = Vec::new();
    for variable in SECRET_VARIABLES {
        let param_variable = format!("{variable}_PARAM");
        let Some(parameter) = set(&param_variable) else {
            continue;
        };
        if set(variable).is_some() {
            return Err(SecretsError::Ambiguous {
                variable,
                param_variable,
            });
        }
        out.push(Wanted {
            variable,
            param_variable,
            parameter,
        });
    }
    Ok(out)
}

/// Reads the `wanted` parameters in one `GetParameters` call with decryption: the value of
/// each secret variable.
pub async fn read(
    client: &aws_sdk_ssm::Client,
    wanted: &[Wanted],
) -> Result<HashMap<&'static str, String>, SecretsError> {
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let mut names: Vec<String> = wanted.iter().map(|w| w.parameter.clone()).collect();
    names.sort();
    names.dedup();
    let out = client
        .get_parameters()
        .set_names(Some(names.clone()))
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| SecretsError::Unreadable {
            parameters: names.join(", "),
            error: crate::error_chain(&e),
        })?;
    let values: HashMap<&str, &str> = out
        .parameters()
        .iter()
        .filter_map(|p| Some((p.name()?, p.value()?)))
        .collect();
    let mut secrets = HashMap::new();
    for w in wanted {
        // GetParameters answers with the parameter's plain name even when asked by ARN.
        let short = w.parameter.rsplit_once(":parameter").map_or("", |(_, n)| n);
        let value = values
            .get(w.parameter.as_str())
            .or_else(|| values.get(short))
            .or_else(|| values.get(short.trim_start_matches('/')));
        match value {
            None => {
                return Err(SecretsError::Missing {
                    parameter: w.parameter.clone(),
                    param_variable: w.param_variable.clone(),
                });
            }
            Some(v) if v.trim().is_empty() => {
                return Err(SecretsError::Empty {
                    parameter: w.parameter.clone(),
                    param_variable: w.param_variable.clone(),
                });
            }
            Some(v) => {
                secrets.insert(w.variable, (*v).to_string());
            }
        }
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.get(k).cloned()
    }

    #[test]
    fn plain_variables_want_nothing_from_ssm() {
        let e = env(&[("CHAT_WEBHOOK_SECRET", "a plain webhook secret")]);
        assert_eq!(wanted(&e).unwrap(), vec![]);
        let e = env(&[("CHAT_SESSION_SECRET_PARAM", "  ")]);
        assert_eq!(wanted(&e).unwrap(), vec![], "blank means unset");
    }

    #[test]
    fn each_param_variable_names_its_parameter() {
        let e = env(&[
            ("CHAT_WEBHOOK_SECRET_PARAM", "/chat/webhook"),
            ("CHAT_AUTH_JWT_SECRET_PARAM", "/chat/jwt"),
            ("CHAT_SESSION_SECRET", "a plain session secret"),
        ]);
        let w = wanted(&e).unwrap();
        let got: Vec<_> = w
            .iter()
            .map(|w| (w.variable, w.parameter.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("CHAT_WEBHOOK_SECRET", "/chat/webhook"),
                ("CHAT_AUTH_JWT_SECRET", "/chat/jwt")
            ]
        );
    }

    #[test]
    fn a_secret_set_both_ways_is_refused_without_its_value() {
        let e = env(&[
            ("CHAT_SESSION_SECRET", "value-that-must-not-leak"),
            ("CHAT_SESSION_SECRET_PARAM", "/chat/session"),
        ]);
        let text = wanted(&e).unwrap_err().to_string();
        assert!(text.contains("CHAT_SESSION_SECRET_PARAM"), "{text}");
        assert!(!text.contains("value-that-must-not-leak"), "{text}");
    }
}
