//! `ckms access-rights ...`: the Cosmian access-rights REST endpoints.

use clap::Subcommand;
use serde_json::{Value, json};

use super::{Ctx, Output};
use crate::error::CliError;

/// `ckms access-rights`.
#[derive(Subcommand, Debug)]
pub enum AccessCommand {
    /// Allow USER to run OPERATIONs on an object you own.
    #[command(
        long_about = "Allow another user to run KMIP operations on an object you own.\n\n\
Operations: get, export, encrypt, decrypt, sign, signatureverify, revoke, destroy, rekey, \
getattributes, ... (lower case KMIP operation names).\n\n\
Example:\n  ckms access-rights grant bob 3f2a... encrypt decrypt"
    )]
    Grant {
        /// The user (client certificate CN) to allow.
        user: String,
        /// Object unique identifier.
        object_id: String,
        /// Operations to allow.
        #[arg(required = true)]
        operations: Vec<String>,
    },
    /// Withdraw operations granted to USER.
    Revoke {
        /// The user.
        user: String,
        /// Object unique identifier.
        object_id: String,
        /// Operations to withdraw.
        #[arg(required = true)]
        operations: Vec<String>,
    },
    /// Who may do what on an object you own.
    List {
        /// Object unique identifier.
        object_id: String,
    },
    /// Objects you own.
    Owned,
    /// Objects others granted you access to.
    Obtained,
}

/// Percent-encode a path segment (RFC 3986 §2.3 unreserved characters pass through).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn pretty_lines(v: &Value) -> String {
    match v.as_array() {
        Some(items) if items.is_empty() => "none".into(),
        Some(items) => items
            .iter()
            .map(|i| serde_json::to_string(i).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n"),
        None => serde_json::to_string_pretty(v).unwrap_or_default(),
    }
}

/// Run `ckms access-rights ...`.
pub fn run(ctx: &Ctx, cmd: AccessCommand) -> Result<Output, CliError> {
    let mut client = ctx.client()?;
    match cmd {
        AccessCommand::Grant {
            user,
            object_id,
            operations,
        } => {
            let body = json!({"unique_identifier": object_id, "user_id": user, "operation_types": operations});
            let v = client.post_json("/access/grant", &body)?;
            Ok(Output::new(success_text(&v), v))
        }
        AccessCommand::Revoke {
            user,
            object_id,
            operations,
        } => {
            let body = json!({"unique_identifier": object_id, "user_id": user, "operation_types": operations});
            let v = client.post_json("/access/revoke", &body)?;
            Ok(Output::new(success_text(&v), v))
        }
        AccessCommand::List { object_id } => {
            let v = client.get_json(&format!("/access/list/{}", encode_segment(&object_id)))?;
            Ok(Output::new(pretty_lines(&v), v))
        }
        AccessCommand::Owned => {
            let v = client.get_json("/access/owned")?;
            Ok(Output::new(pretty_lines(&v), v))
        }
        AccessCommand::Obtained => {
            let v = client.get_json("/access/obtained")?;
            Ok(Output::new(pretty_lines(&v), v))
        }
    }
}

fn success_text(v: &Value) -> String {
    v.get("success")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn segments_are_encoded() {
        assert_eq!(super::encode_segment("abc-1_2.3~"), "abc-1_2.3~");
        assert_eq!(super::encode_segment("[\"t\"]"), "%5B%22t%22%5D");
    }
}
