//! MongoDB server error codes mc-restore acts on, in one place, and [`describe`]: a server
//! error as one readable line (code, code name, message), never the driver's debug dump of the
//! raw reply.

use mongodb::error::{Error, ErrorKind, WriteFailure};

pub const UNAUTHORIZED: i32 = 13;
pub const USER_NOT_FOUND: i32 = 11;
pub const NAMESPACE_NOT_FOUND: i32 = 26;
pub const INDEX_NOT_FOUND: i32 = 27;
pub const ROLE_NOT_FOUND: i32 = 31;
pub const NAMESPACE_EXISTS: i32 = 48;
/// "Update of non-mod failed": an oplog update of a document that is not there.
pub const UPDATE_OPERATION_FAILED: i32 = 218;
pub const SNAPSHOT_TOO_OLD: i32 = 239;
pub const SNAPSHOT_UNAVAILABLE: i32 = 246;
pub const DUPLICATE_KEY: i32 = 11000;
pub const BSON_OBJECT_TOO_LARGE: i32 = 10334;

/// The server's error code of a command or single write error, if the error is one.
pub fn code_of(e: &Error) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .and_then(|w| w.first())
            .map(|w| w.code),
        _ => None,
    }
}

/// The built-in roles a restore target's user needs (`mc-restore --at` and a drill's scratch):
/// `restore` holds the cluster-wide `applyOps` action replay needs and `bypassDocumentValidation`;
/// `readWriteAnyDatabase` the updates, deletes and reads (docs/operations.md).
pub const TARGET_ROLES: &str = "the built-in roles `restore` and `readWriteAnyDatabase`";

/// What a source's user needs for the reads of verify-data and drills: the oplog and every
/// database at T.
pub const SOURCE_ROLES: &str = "the built-in role `backup`";

/// The database and command an Unauthorized (13) server error names ("not authorized on DB to
/// execute command { CMD: … }"), `?` for what the message does not say.
pub fn unauthorized(e: &Error) -> Option<(String, String)> {
    let ErrorKind::Command(c) = e.kind.as_ref() else {
        return None;
    };
    (c.code == UNAUTHORIZED).then(|| mc_core::authz::unauthorized_parts(&c.message))
}

/// For a missing privilege, the line that names what to grant (`roles`: [`TARGET_ROLES`],
/// [`SOURCE_ROLES`]) instead of the server's message, which repeats the refused command (an
/// `applyOps` with the documents it carried).
pub fn lacks_privilege(e: &Error, roles: &str) -> Option<String> {
    unauthorized(e).map(|(db, command)| {
        format!(
            "server error 13 (Unauthorized): the MongoDB user lacks a privilege for {command} on {db}: grant it {roles} (docs/operations.md, 'MongoDB users and roles')"
        )
    })
}

/// [`describe`] for a command on `side` (`source` or `target`): a source's missing privilege
/// names the source's roles.
pub fn describe_on(side: &str, e: &Error) -> String {
    match side {
        "source" => lacks_privilege(e, SOURCE_ROLES).unwrap_or_else(|| describe(e)),
        _ => describe(e),
    }
}

/// One line for an error: `server error 121 (DocumentValidationFailure): Document failed
/// validation` for what the server refused (with the count when a batch had several), the
/// driver's own text for the rest (connection, authentication, I/O).
///
/// A missing privilege names the roles to grant: those of a restore target ([`TARGET_ROLES`];
/// this is how the load and replay describe the target's refusals), or [`SOURCE_ROLES`] for a
/// read of the oplog (`local`).
pub fn describe(e: &Error) -> String {
    if let Some((db, _)) = unauthorized(e) {
        let roles = if db == "local" {
            SOURCE_ROLES
        } else {
            TARGET_ROLES
        };
        return lacks_privilege(e, roles).unwrap_or_default();
    }
    let server = |code: i32, name: Option<&str>, message: &str| {
        format!(
            "server error {code}{}: {message}",
            name.filter(|n| !n.is_empty())
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        )
    };
    match e.kind.as_ref() {
        ErrorKind::Command(c) => server(c.code, Some(&c.code_name), &c.message),
        ErrorKind::Write(WriteFailure::WriteError(w)) => {
            server(w.code, w.code_name.as_deref(), &w.message)
        }
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => format!(
            "write concern not satisfied: {}",
            server(w.code, Some(&w.code_name), &w.message)
        ),
        ErrorKind::InsertMany(m) => {
            let errors = m.write_errors.as_deref().unwrap_or_default();
            match (errors.first(), &m.write_concern_error) {
                (Some(w), _) => {
                    let more = if errors.len() > 1 {
                        format!(" (and {} more write errors)", errors.len() - 1)
                    } else {
                        String::new()
                    };
                    format!(
                        "{}, document #{} of the batch{more}",
                        server(w.code, w.code_name.as_deref(), &w.message),
                        w.index
                    )
                }
                (None, Some(w)) => format!(
                    "write concern not satisfied: {}",
                    server(w.code, Some(&w.code_name), &w.message)
                ),
                (None, None) => "insert failed without a reason from the server".into(),
            }
        }
        _ => e.to_string(),
    }
}
