//! What MongoDB's Unauthorized (code 13) message names, so the agent and mc-restore can say
//! which role to grant instead of repeating the refused command (which can carry documents).
//! Pure text: mc-core does not depend on the MongoDB driver.

/// `("local", "find")` from "not authorized on local to execute command { find: …"; unknown
/// parts as `?`.
pub fn unauthorized_parts(message: &str) -> (String, String) {
    // listDatabases with `authorizedDatabases: false` says it differently.
    if message.starts_with("Insufficient permissions to list all databases") {
        return ("admin".to_owned(), "listDatabases".to_owned());
    }
    let rest = message.strip_prefix("not authorized on ").unwrap_or("");
    let (db, command) = rest
        .split_once(" to execute command { ")
        .map(|(db, cmd)| (db, cmd.split([':', ' ']).next().unwrap_or("")))
        .unwrap_or(("", ""));
    let known = |s: &str| {
        if s.is_empty() {
            "?".to_owned()
        } else {
            s.to_owned()
        }
    };
    (known(db), known(command))
}

#[cfg(test)]
mod tests {
    use super::unauthorized_parts;

    #[test]
    fn unauthorized_messages_name_database_and_command() {
        assert_eq!(
            unauthorized_parts(
                "not authorized on local to execute command { find: \"oplog.rs\", filter: {} }"
            ),
            ("local".to_owned(), "find".to_owned())
        );
        assert_eq!(
            unauthorized_parts(
                "not authorized on admin to execute command { applyOps: [ { op: \"i\" } ] }"
            ),
            ("admin".to_owned(), "applyOps".to_owned())
        );
        assert_eq!(
            unauthorized_parts("Insufficient permissions to list all databases"),
            ("admin".to_owned(), "listDatabases".to_owned())
        );
        assert_eq!(
            unauthorized_parts("something else"),
            ("?".to_owned(), "?".to_owned())
        );
    }
}
