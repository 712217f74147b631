//! Which namespaces a restore touches (`--ns`, `--exclude-ns`) and under which names it writes
//! them (`--ns-from`, `--ns-to`).
//!
//! Patterns are `db.collection` with `*` matching any run of characters (`shop.*`, `*.users`,
//! `shop.orders_*`). With no `--ns`, every namespace is in scope except the server's own
//! databases (`admin`, `local`, `config`), which are never restored.
//!
//! The one exception, asked for with `--restore-users-and-roles`
//! ([`NamespaceMap::with_users_and_roles`]): users and roles (`admin.system.users`,
//! `admin.system.roles`) are then in scope whatever `--ns` says, and are written to staging
//! collections ([`STAGED_USERS_NS`], [`STAGED_ROLES_NS`]) that load and replay fill like any
//! other; `crate::users` merges them into the target's users and roles at the end.

/// Databases a restore never writes.
pub const SYSTEM_DATABASES: &[&str] = &["admin", "local", "config"];

/// Where MongoDB keeps users, and roles.
pub const USERS_NS: &str = "admin.system.users";
pub const ROLES_NS: &str = "admin.system.roles";
/// The staging collections users and roles are restored into before the merge. The names are
/// mc-restore's: a restore with users and roles drops what it finds under them.
pub const STAGED_USERS_NS: &str = "admin.mc_restore_users";
pub const STAGED_ROLES_NS: &str = "admin.mc_restore_roles";

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("bad namespace pattern {0:?}: write db.collection, with * for any characters (shop.*, *.users)")]
    BadPattern(String),
    #[error("--ns-from {from:?} needs --ns-to (and the other way round); both name a database (shop) or a collection (shop.orders)")]
    Unpaired { from: String },
    #[error(
        "--ns-from {from:?} and --ns-to {to:?} must both name databases or both name collections"
    )]
    Mismatched { from: String, to: String },
    #[error("cannot restore into the server's own database {0:?}")]
    SystemTarget(String),
    #[error("--restore-users-and-roles cannot be combined with --ns-from/--ns-to: restored users' roles name the source's databases, so next to a renamed copy they would grant access to the originals; restore users and roles in a restore without renaming")]
    UsersWithRename,
}

/// The scope and renaming of a restore.
#[derive(Debug, Clone, Default)]
pub struct NamespaceMap {
    include: Vec<String>,
    exclude: Vec<String>,
    /// (from, to): both databases (no dot) or both full namespaces.
    rename: Option<(String, String)>,
    /// Users and roles are restored (through the staging collections).
    users_and_roles: bool,
}

/// The staging collection of `admin.system.users` / `admin.system.roles`.
fn staged(ns: &str) -> Option<&'static str> {
    match ns {
        USERS_NS => Some(STAGED_USERS_NS),
        ROLES_NS => Some(STAGED_ROLES_NS),
        _ => None,
    }
}

impl NamespaceMap {
    pub fn new(
        include: Vec<String>,
        exclude: Vec<String>,
        from: Option<String>,
        to: Option<String>,
    ) -> Result<Self, NamespaceError> {
        for p in include.iter().chain(&exclude) {
            if p.is_empty() || !p.contains('.') || p.starts_with('.') {
                return Err(NamespaceError::BadPattern(p.clone()));
            }
        }
        let rename = match (from, to) {
            (None, None) => None,
            (Some(from), None) => return Err(NamespaceError::Unpaired { from }),
            (None, Some(to)) => return Err(NamespaceError::Unpaired { from: to }),
            (Some(from), Some(to)) => {
                if from.contains('.') != to.contains('.') || from.is_empty() || to.is_empty() {
                    return Err(NamespaceError::Mismatched { from, to });
                }
                let db = to.split('.').next().unwrap_or_default();
                if SYSTEM_DATABASES.contains(&db) {
                    return Err(NamespaceError::SystemTarget(to));
                }
                Some((from, to))
            }
        };
        Ok(Self {
            include,
            exclude,
            rename,
            users_and_roles: false,
        })
    }

    /// The same scope, plus users and roles (`--restore-users-and-roles`).
    pub fn with_users_and_roles(mut self) -> Result<Self, NamespaceError> {
        if self.rename.is_some() {
            return Err(NamespaceError::UsersWithRename);
        }
        self.users_and_roles = true;
        Ok(self)
    }

    /// The same scope without users and roles (to compare the namespaces alone).
    pub fn without_users_and_roles(&self) -> Self {
        Self {
            users_and_roles: false,
            ..self.clone()
        }
    }

    /// The scope and renaming in words (the restore journal compares it on `--resume`):
    /// `--ns shop.* --exclude-ns shop.tmp --ns-from shop --ns-to shop2`, `all` for no pattern.
    pub fn describe(&self) -> String {
        let mut words: Vec<String> = Vec::new();
        words.extend(self.include.iter().map(|p| format!("--ns {p}")));
        words.extend(self.exclude.iter().map(|p| format!("--exclude-ns {p}")));
        if let Some((from, to)) = &self.rename {
            words.push(format!("--ns-from {from} --ns-to {to}"));
        }
        if self.users_and_roles {
            words.push("--restore-users-and-roles".into());
        }
        if words.is_empty() {
            "all".into()
        } else {
            words.join(" ")
        }
    }

    /// Whether users and roles are restored.
    pub fn users_and_roles(&self) -> bool {
        self.users_and_roles
    }

    /// Whether the source namespace `ns` (`db.collection`) is restored.
    pub fn in_scope(&self, ns: &str) -> bool {
        if self.users_and_roles && staged(ns).is_some() {
            return true;
        }
        let db = ns.split('.').next().unwrap_or_default();
        if SYSTEM_DATABASES.contains(&db) || ns.contains(".system.") && !is_buckets(ns) {
            return false;
        }
        // A time-series collection's buckets go with the collection; a temporary collection
        // (`$out`, `convertToCapped`, a rename across databases) with its database, since the
        // rename that ends it may land on any collection of the database.
        let named = |p: &String| glob(p, ns) || is_buckets(ns) && glob(p, &buckets_of(ns));
        let included = self.include.is_empty()
            || self.include.iter().any(|p| {
                named(p) || is_temporary(ns) && glob(p.split('.').next().unwrap_or_default(), db)
            });
        included && !self.exclude.iter().any(named)
    }

    /// Whether any namespace of database `db` can be in scope (for whole-database commands).
    pub fn db_in_scope(&self, db: &str) -> bool {
        if SYSTEM_DATABASES.contains(&db) {
            return false;
        }
        self.include.is_empty()
            || self
                .include
                .iter()
                .any(|p| glob(p.split('.').next().unwrap_or_default(), db))
    }

    /// The name `ns` is written under on the target.
    pub fn target(&self, ns: &str) -> String {
        if let Some(staging) = staged(ns).filter(|_| self.users_and_roles) {
            return staging.to_owned();
        }
        match &self.rename {
            Some((from, to)) if !from.contains('.') => match ns.split_once('.') {
                Some((db, coll)) if db == from => format!("{to}.{coll}"),
                _ => ns.to_owned(),
            },
            Some((from, to)) if ns == from => to.clone(),
            // A time-series collection's buckets follow it.
            Some((from, to)) if is_buckets(ns) && buckets_of(ns) == *from => {
                let (db, coll) = to.split_once('.').unwrap_or((to, ""));
                format!("{db}.system.buckets.{coll}")
            }
            _ => ns.to_owned(),
        }
    }

    /// Whether a restore writes the target namespace `ns`: some source namespace in scope is
    /// written under that name. With a rename, the source's own names are *not* written (a
    /// restore of `shop` as `shop_restored` into the source's cluster must never touch `shop`).
    pub fn writes(&self, target_ns: &str) -> bool {
        let source = self.source(target_ns);
        self.in_scope(&source) && self.target(&source) == target_ns
    }

    /// Whether namespaces are written under other names (`--ns-from/--ns-to`).
    pub fn renames(&self) -> bool {
        self.rename.is_some()
    }

    /// The source name of target namespace `ns`: the inverse of [`NamespaceMap::target`].
    pub fn source(&self, ns: &str) -> String {
        if self.users_and_roles {
            match ns {
                STAGED_USERS_NS => return USERS_NS.to_owned(),
                STAGED_ROLES_NS => return ROLES_NS.to_owned(),
                _ => {}
            }
        }
        match &self.rename {
            Some((from, to)) if !from.contains('.') => match ns.split_once('.') {
                Some((db, coll)) if db == to => format!("{from}.{coll}"),
                _ => ns.to_owned(),
            },
            Some((from, to)) if ns == to => from.clone(),
            _ => ns.to_owned(),
        }
    }

    /// The target database of source database `db`.
    pub fn target_db(&self, db: &str) -> String {
        match &self.rename {
            Some((from, to)) if !from.contains('.') && from == db => to.clone(),
            _ => db.to_owned(),
        }
    }
}

/// `db.system.buckets.x`: the storage of time-series collection `db.x`.
pub fn is_buckets(ns: &str) -> bool {
    ns.split_once('.')
        .is_some_and(|(_, c)| c.starts_with("system.buckets."))
}

/// Whether `ns` names a collection the server creates for a moment and renames over its
/// target: `$out` (`tmp.agg_out.*`), map-reduce (`tmp.mr.*`), `convertToCapped`
/// (`tmp*.convertToCapped.*`), `renameCollection` across databases (`tmp*.renameCollection`).
pub fn is_temporary(ns: &str) -> bool {
    let Some((_, coll)) = ns.split_once('.') else {
        return false;
    };
    coll.starts_with("tmp.agg_out.")
        || coll.starts_with("tmp.mr.")
        || coll.starts_with("tmp")
            && (coll.contains(".convertToCapped.") || coll.ends_with(".renameCollection"))
}

/// `db.x` for `db.system.buckets.x`.
fn buckets_of(ns: &str) -> String {
    ns.replacen("system.buckets.", "", 1)
}

/// `*` matches any run of characters, everything else itself.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(at) => rest = &rest[at + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(inc: &[&str], exc: &[&str]) -> NamespaceMap {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        NamespaceMap::new(v(inc), v(exc), None, None).unwrap()
    }

    #[test]
    fn scope_follows_patterns_and_never_takes_system_databases() {
        let all = map(&[], &[]);
        assert!(all.in_scope("shop.orders"));
        assert!(!all.in_scope("admin.system.users"));
        assert!(!all.in_scope("config.transactions"));
        assert!(all.in_scope("shop.system.buckets.metrics"));
        let one = map(&["shop.metrics"], &[]);
        assert!(
            one.in_scope("shop.system.buckets.metrics"),
            "buckets follow their collection"
        );
        assert!(!one.in_scope("shop.system.buckets.other"));
        assert!(
            one.in_scope("shop.tmp.agg_out.1f2e"),
            "$out's temporary collection"
        );
        assert!(one.in_scope("shop.tmpAb12c.convertToCapped.metrics"));
        assert!(one.in_scope("shop.tmpXy9.renameCollection"));
        assert!(!one.in_scope("other.tmp.agg_out.1f2e"));
        assert!(
            !one.in_scope("shop.tmp_reports"),
            "only the server's temporary names"
        );
        assert!(!all.in_scope("shop.system.views"));
        let some = map(&["shop.*", "*.users"], &["shop.tmp_*"]);
        assert!(some.in_scope("shop.orders"));
        assert!(some.in_scope("crm.users"));
        assert!(!some.in_scope("crm.leads"));
        assert!(!some.in_scope("shop.tmp_1"));
        assert!(some.db_in_scope("shop") && some.db_in_scope("crm"));
        assert!(!map(&["shop.*"], &[]).db_in_scope("crm"));
    }

    #[test]
    fn renames_databases_and_collections() {
        let db =
            NamespaceMap::new(vec![], vec![], Some("shop".into()), Some("scratch".into())).unwrap();
        assert_eq!(db.target("shop.orders"), "scratch.orders");
        assert_eq!(db.target("shopx.orders"), "shopx.orders");
        let coll = NamespaceMap::new(
            vec![],
            vec![],
            Some("shop.metrics".into()),
            Some("lab.m2".into()),
        )
        .unwrap();
        assert_eq!(coll.target("shop.metrics"), "lab.m2");
        assert_eq!(
            coll.target("shop.system.buckets.metrics"),
            "lab.system.buckets.m2"
        );
        assert_eq!(coll.target("shop.other"), "shop.other");
    }

    #[test]
    fn a_renamed_restore_never_writes_the_source_names() {
        let m = NamespaceMap::new(
            vec!["demo.*".into()],
            vec![],
            Some("demo".into()),
            Some("demo_restored".into()),
        )
        .unwrap();
        assert!(m.writes("demo_restored.interviews"));
        assert!(!m.writes("demo.interviews"));
        assert!(!m.writes("other.x"));
        let c = NamespaceMap::new(
            vec![],
            vec![],
            Some("shop.orders".into()),
            Some("shop.orders_old".into()),
        )
        .unwrap();
        assert!(c.writes("shop.orders_old"));
        assert!(!c.writes("shop.orders"));
        assert!(c.writes("shop.customers"));
    }

    #[test]
    fn users_and_roles_go_to_staging_only_when_asked() {
        let plain = map(&["shop.*"], &[]);
        assert!(!plain.in_scope(USERS_NS) && !plain.in_scope(ROLES_NS));
        let with = plain.clone().with_users_and_roles().unwrap();
        assert!(with.users_and_roles());
        // In scope whatever --ns says, written to the staging collections.
        assert!(with.in_scope(USERS_NS) && with.in_scope(ROLES_NS));
        assert_eq!(with.target(USERS_NS), STAGED_USERS_NS);
        assert_eq!(with.target(ROLES_NS), STAGED_ROLES_NS);
        assert!(with.writes(STAGED_USERS_NS) && with.writes(STAGED_ROLES_NS));
        assert!(!with.writes(USERS_NS), "never the real collections");
        // Everything else of admin stays out, and the rest of the scope is unchanged.
        assert!(!with.in_scope("admin.system.version") && !with.in_scope("admin.x"));
        assert!(!with.in_scope("crm.leads") && with.in_scope("shop.orders"));
        assert!(!with.db_in_scope("admin"));
        let renamed =
            NamespaceMap::new(vec![], vec![], Some("shop".into()), Some("scratch".into())).unwrap();
        assert!(matches!(
            renamed.with_users_and_roles(),
            Err(NamespaceError::UsersWithRename)
        ));
    }

    #[test]
    fn bad_arguments_are_named() {
        assert!(NamespaceMap::new(vec!["shop".into()], vec![], None, None).is_err());
        assert!(NamespaceMap::new(vec![], vec![], Some("a".into()), None).is_err());
        assert!(NamespaceMap::new(vec![], vec![], Some("a".into()), Some("b.c".into())).is_err());
        assert!(NamespaceMap::new(vec![], vec![], Some("a".into()), Some("admin".into())).is_err());
    }
}
