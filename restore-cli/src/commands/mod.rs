//! One module per `mc-restore` subcommand.

pub mod catalog;
pub mod drill;
pub mod kafka_args;
pub mod kafka_offsets;
pub mod kafka_security;
pub mod list;
pub mod progress;
pub mod restore;
pub mod verify;
pub mod verify_data;

/// Exit code when a check ran and found damaged or missing data (as opposed to 1: could not run).
pub const EXIT_VERIFY_FAILED: i32 = 3;

/// `--at` as clap reads it, for every command that takes a restore point.
pub fn parse_point(
    s: &str,
) -> Result<mc_restore::point::RestorePoint, mc_restore::point::BadPoint> {
    s.parse()
}

/// The namespace options shared by `--at`, `drill` and `verify-data`: which namespaces, and
/// under which names on the target.
#[derive(Debug, Clone, clap::Args)]
pub struct NamespaceArgs {
    /// Only namespaces matching this pattern (db.coll, * wildcards); repeatable.
    #[arg(long = "ns", value_name = "PATTERN")]
    pub include: Vec<String>,

    /// Leave out namespaces matching this pattern; repeatable.
    #[arg(long = "exclude-ns", value_name = "PATTERN")]
    pub exclude: Vec<String>,

    /// Source database (or db.collection) written under the name given by --ns-to.
    #[arg(long, value_name = "NS", requires = "ns_to")]
    pub ns_from: Option<String>,

    /// The target name of --ns-from.
    #[arg(long, value_name = "NS", requires = "ns_from")]
    pub ns_to: Option<String>,
}

impl NamespaceArgs {
    /// The scope and renaming these options describe.
    pub fn map(
        &self,
    ) -> Result<mc_restore::namespaces::NamespaceMap, mc_restore::namespaces::NamespaceError> {
        mc_restore::namespaces::NamespaceMap::new(
            self.include.clone(),
            self.exclude.clone(),
            self.ns_from.clone(),
            self.ns_to.clone(),
        )
    }
}
