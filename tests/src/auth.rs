//! The authenticated TLS replica set of `scripts/services.sh` (keyFile authentication,
//! `--tlsMode requireTLS`, a CA of its own): least-privilege users for tests of what each
//! component needs (docs/operations.md, "MongoDB users and roles").
//!
//! `MC_TEST_MONGODB_TLS_URI` carries no credentials (`mongodb://127.0.0.1:37117/?replicaSet=rstls
//! &tls=true&tlsCAFile=…`); [`TlsSet::uri_for`] puts a user's in, with `authSource=admin`.

use std::process::Output;

use mongodb::bson::{doc, Bson, Document};
use mongodb::Client;

use crate::{unique_name, var};

/// Where the authenticated TLS set is, and its administrator (to create test users).
#[derive(Clone)]
pub struct TlsSet {
    /// Without credentials: `mongodb://host/?replicaSet=…&tls=true&tlsCAFile=…`.
    pub uri: String,
    /// `127.0.0.1:<port>`.
    pub host: String,
    pub ca_file: String,
    admin_user: String,
    admin_password: String,
}

impl std::fmt::Debug for TlsSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSet")
            .field("uri", &self.uri)
            .field("admin_user", &self.admin_user)
            .field("admin_password", &"<redacted>")
            .finish()
    }
}

/// A user created for one test, with a password of its own.
#[derive(Clone)]
pub struct TestUser {
    pub name: String,
    pub password: String,
    /// `role@db` of every role granted.
    pub roles: Vec<String>,
}

impl std::fmt::Debug for TestUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestUser")
            .field("name", &self.name)
            .field("roles", &self.roles)
            .finish()
    }
}

impl TlsSet {
    #[track_caller]
    pub fn from_env() -> Self {
        Self {
            uri: var("MC_TEST_MONGODB_TLS_URI"),
            host: var("MC_TEST_MONGODB_TLS_HOST"),
            ca_file: var("MC_TEST_MONGODB_TLS_CA_FILE"),
            admin_user: var("MC_TEST_MONGODB_TLS_ADMIN_USER"),
            admin_password: var("MC_TEST_MONGODB_TLS_ADMIN_PASSWORD"),
        }
    }

    /// The set's URI with `user:password@` and `authSource=admin`.
    pub fn uri_for(&self, user: &str, password: &str) -> String {
        let rest = self
            .uri
            .strip_prefix("mongodb://")
            .expect("MC_TEST_MONGODB_TLS_URI starts with mongodb://");
        format!("mongodb://{user}:{password}@{rest}&authSource=admin")
    }

    /// The URI of `user`.
    pub fn user_uri(&self, user: &TestUser) -> String {
        self.uri_for(&user.name, &user.password)
    }

    /// A client authenticated as the administrator (`root`).
    pub async fn admin_client(&self) -> Client {
        let uri = self.uri_for(&self.admin_user, &self.admin_password);
        Client::with_uri_str(&uri)
            .await
            .unwrap_or_else(|e| panic!("a client of the TLS set ({}): {e}", self.uri))
    }

    /// Creates a user in `admin` with exactly `roles` (`("backup", "admin")`, `("readWrite",
    /// "app")`) and a random password.
    pub async fn create_user(
        &self,
        admin: &Client,
        prefix: &str,
        roles: &[(&str, &str)],
    ) -> TestUser {
        let name = unique_name(prefix);
        let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
        let granted: Vec<Bson> = roles
            .iter()
            .map(|(role, db)| Bson::Document(doc! {"role": *role, "db": *db}))
            .collect();
        admin
            .database("admin")
            .run_command(doc! {"createUser": &name, "pwd": &password, "roles": granted})
            .await
            .unwrap_or_else(|e| panic!("createUser {name} with {roles:?}: {e}"));
        TestUser {
            name,
            password,
            roles: roles.iter().map(|(r, d)| format!("{r}@{d}")).collect(),
        }
    }

    /// Drops a test user (at the end of a test).
    pub async fn drop_user(&self, admin: &Client, user: &TestUser) {
        let _ = admin
            .database("admin")
            .run_command(doc! {"dropUser": &user.name})
            .await;
    }

    /// Drops databases a test wrote (at its end).
    pub async fn drop_databases(&self, admin: &Client, names: &[&str]) {
        for db in names {
            let _ = admin.database(db).drop().await;
        }
    }
}

/// The roles the server says `user` has (`connectionStatus`), as `role@db`, sorted: proves the
/// test runs as the user it thinks it does.
pub async fn session_roles(set: &TlsSet, user: &TestUser) -> Vec<String> {
    let client = Client::with_uri_str(set.user_uri(user))
        .await
        .expect("a client of the TLS set");
    let status: Document = client
        .database("admin")
        .run_command(doc! {"connectionStatus": 1})
        .await
        .unwrap_or_else(|e| panic!("connectionStatus as {}: {e}", user.name));
    let mut roles: Vec<String> = status
        .get_document("authInfo")
        .and_then(|a| a.get_array("authenticatedUserRoles"))
        .expect("authInfo.authenticatedUserRoles")
        .iter()
        .filter_map(Bson::as_document)
        .map(|r| {
            format!(
                "{}@{}",
                r.get_str("role").unwrap_or("?"),
                r.get_str("db").unwrap_or("?")
            )
        })
        .collect();
    roles.sort();
    roles
}

/// Fails the test if `secret` appears in `text` (a process's output, a log file).
#[track_caller]
pub fn assert_secret_absent(what: &str, text: &str, secret: &str) {
    assert!(!text.contains(secret), "{what} shows a password:\n{text}");
}

/// Fails the test if any of `secrets` appears in the stdout or stderr of `out`.
#[track_caller]
pub fn assert_output_hides(what: &str, out: &Output, secrets: &[&str]) {
    for secret in secrets {
        assert_secret_absent(
            &format!("{what} stdout"),
            &String::from_utf8_lossy(&out.stdout),
            secret,
        );
        assert_secret_absent(
            &format!("{what} stderr"),
            &String::from_utf8_lossy(&out.stderr),
            secret,
        );
    }
}
