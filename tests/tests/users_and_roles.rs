//! Users and roles (issue 4), end to end: a snapshot taken with users and roles captures
//! `admin.system.users` / `admin.system.roles` (hashed credentials included); `mc-restore
//! --restore-users-and-roles` recreates them on a second, private mongod as they were at the
//! restore point, with user changes after the snapshot replayed from the oplog (a user created,
//! a password changed, a role granted, a user dropped), and users the target already has kept.
//! That a restored user's password works is checked by authenticating (SCRAM) against the
//! target: mongod verifies credentials even when it does not enforce access control. Snapshots
//! without users and roles are refused for such a restore, with the alternatives named.

use mc_agent::snapshot::SnapshotSettings;
use mc_restore::namespaces::{STAGED_ROLES_NS, STAGED_USERS_NS};
use mc_tests::mongod::PrivateReplSet;
use mc_tests::restore::{drill_phases, mc_restore, repo_paths, show, Captured};
use mc_tests::*;
use mongodb::bson::{doc, Bson, Document};
use mongodb::Client;

/// Authenticates as `user` (defined in `db`) on `host` and returns the roles the server says
/// the session has (`connectionStatus`), or the error.
async fn login(host: &str, db: &str, user: &str, password: &str) -> Result<Vec<String>, String> {
    let uri = format!(
        "mongodb://{user}:{password}@{host}/?directConnection=true&authSource={db}&serverSelectionTimeoutMS=5000"
    );
    let client = Client::with_uri_str(&uri)
        .await
        .map_err(|e| e.to_string())?;
    let status = client
        .database(db)
        .run_command(doc! {"connectionStatus": 1})
        .await
        .map_err(|e| e.to_string())?;
    let roles = status
        .get_document("authInfo")
        .and_then(|a| a.get_array("authenticatedUserRoles"))
        .map_err(|e| e.to_string())?
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
    Ok(roles)
}

async fn create_user(client: &Client, db: &str, user: &str, password: &str, roles: Bson) {
    client
        .database(db)
        .run_command(doc! {"createUser": user, "pwd": password, "roles": roles})
        .await
        .unwrap_or_else(|e| panic!("createUser {user}: {e}"));
}

/// The source side both tests start from: `<db>.things` with `docs` documents, a role that may
/// read it, and users of the database: `before` (granted the role), `changed`, `dropped` and
/// `shared` (granted `read`); `after` and `late` name users the tests create later.
struct SourceUsers {
    db_name: String,
    before: String,
    changed: String,
    dropped: String,
    after: String,
    late: String,
    shared: String,
    role: String,
}

impl SourceUsers {
    async fn create(client: &Client, prefix: &str, docs: i32) -> Self {
        let db_name = unique_db(prefix);
        let db = client.database(&db_name);
        db.collection::<Document>("things")
            .insert_many((0..docs).map(|i| doc! {"_id": i}))
            .await
            .unwrap();
        let name = |what: &str| format!("{what}_{db_name}");
        let users = SourceUsers {
            before: name("before"),
            changed: name("changed"),
            dropped: name("dropped"),
            after: name("after"),
            late: name("late"),
            shared: name("shared"),
            role: name("role"),
            db_name: db_name.clone(),
        };
        db.run_command(doc! {
            "createRole": &users.role,
            "privileges": [{"resource": {"db": &db_name, "collection": "things"}, "actions": ["find"]}],
            "roles": [],
        })
        .await
        .unwrap();
        let granted = Bson::Array(vec![Bson::Document(
            doc! {"role": &users.role, "db": &db_name},
        )]);
        create_user(client, &db_name, &users.before, "pw-before", granted).await;
        create_user(
            client,
            &db_name,
            &users.changed,
            "old-pw",
            read_role(&db_name),
        )
        .await;
        create_user(
            client,
            &db_name,
            &users.dropped,
            "pw-dropped",
            read_role(&db_name),
        )
        .await;
        create_user(
            client,
            &db_name,
            &users.shared,
            "source-pw",
            read_role(&db_name),
        )
        .await;
        users
    }
}

/// The `read` role on `db`, as a `roles` array.
fn read_role(db: &str) -> Bson {
    Bson::Array(vec![Bson::Document(doc! {"role": "read", "db": db})])
}

async fn user_ids(client: &Client) -> Vec<String> {
    let mut ids: Vec<String> = client
        .database("admin")
        .collection::<Document>("system.users")
        .distinct("_id", doc! {})
        .await
        .unwrap()
        .into_iter()
        .filter_map(|b| b.as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_and_roles_are_captured_only_when_asked_and_restored_at_the_point() {
    let client = mongo_client().await;
    let SourceUsers {
        db_name,
        before,
        changed,
        dropped,
        after,
        late,
        shared,
        role,
    } = SourceUsers::create(&client, "usr", 50).await;
    let db = client.database(&db_name);
    let read = || read_role(&db_name);

    let source_id = unique_name("usr");
    let cap = Captured::start(&source_id).await;
    // Without users and roles (the default), then with them.
    let plain = cap.snapshot(&db_name).await;
    let with = cap
        .snapshot_with(&SnapshotSettings {
            users_and_roles: true,
            ..cap.snapshot_settings(&db_name)
        })
        .await;
    let namespaces = |m: &mc_core::catalog::SnapshotManifest| -> Vec<String> {
        m.collections.iter().map(|c| c.ns.clone()).collect()
    };
    assert!(
        !namespaces(&plain).iter().any(|ns| ns.starts_with("admin.")),
        "{:?}",
        namespaces(&plain)
    );
    assert!(
        namespaces(&with).contains(&"admin.system.users".to_owned())
            && namespaces(&with).contains(&"admin.system.roles".to_owned()),
        "{:?}",
        namespaces(&with)
    );
    let users_entry = with
        .collections
        .iter()
        .find(|c| c.ns == "admin.system.users")
        .unwrap();
    assert!(users_entry.count >= 4, "{users_entry:?}");

    // Changes after the snapshot, before the point: replay must bring them.
    create_user(&client, &db_name, &after, "pw-after", read()).await;
    db.run_command(doc! {"updateUser": &changed, "pwd": "new-pw"})
        .await
        .unwrap();
    db.run_command(
        doc! {"grantRolesToUser": &before, "roles": [{"role": "readWrite", "db": &db_name}]},
    )
    .await
    .unwrap();
    db.run_command(doc! {"dropUser": &dropped}).await.unwrap();
    let point = cap.source.majority_point().await.unwrap();
    // After the point: not restored.
    create_user(&client, &db_name, &late, "pw-late", read()).await;
    let (dir, _repo) = cap.finish().await;
    let (repo_path, keyring) = repo_paths(dir.path());
    let repo_arg = repo_path.to_str().unwrap().to_owned();
    let at = format!("ts:{}:{}", point.t, point.i);
    let ns = format!("{db_name}.*");

    let target = PrivateReplSet::start(Default::default()).await;
    let host = target.host(0);
    let target_client = target.node_client(0).clone();
    // The target has its own user under a name the source also has: it is kept.
    create_user(&target_client, &db_name, &shared, "target-pw", read()).await;

    // Refusals, before anything is written.
    let base = [
        "--at",
        at.as_str(),
        "--target",
        &target.uri(),
        "--repo",
        &repo_arg,
        "--source",
        &source_id,
        "--ns",
        &ns,
        "--restore-users-and-roles",
    ];
    let refused = mc_restore(
        &[&base[..], &["--snapshot", &plain.id, "--dry-run"]].concat(),
        &keyring,
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{}", show(&refused));
    assert!(
        stderr.contains(&format!(
            "snapshot {} did not capture users and roles",
            plain.id
        )) && stderr.contains(&with.id),
        "{}",
        show(&refused)
    );
    let renamed = mc_restore(
        &[&base[..], &["--ns-from", &db_name, "--ns-to", "elsewhere"]].concat(),
        &keyring,
    );
    assert!(
        String::from_utf8_lossy(&renamed.stderr)
            .contains("--restore-users-and-roles cannot be combined with --ns-from/--ns-to"),
        "{}",
        show(&renamed)
    );
    let dry = mc_restore(&[&base[..], &["--dry-run"]].concat(), &keyring);
    assert!(dry.status.success(), "{}", show(&dry));
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains("users and roles: loaded and replayed"),
        "{}",
        show(&dry)
    );

    // The restore.
    let out = mc_restore(&[&base[..], &["--json"]].concat(), &keyring);
    assert!(out.status.success(), "{}", show(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let merged = &summary["users_and_roles"];
    let id = |u: &str| format!("{db_name}.{u}");
    assert_eq!(
        merged["kept_existing_users"],
        serde_json::json!([id(&shared)]),
        "{summary}"
    );
    assert!(
        merged["roles"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(id(&role))),
        "{summary}"
    );

    // Users as at the point.
    let restored: Vec<String> = user_ids(&target_client)
        .await
        .into_iter()
        .filter(|u| u.starts_with(&format!("{db_name}.")))
        .collect();
    let mut expected = vec![id(&after), id(&before), id(&changed), id(&shared)];
    expected.sort();
    assert_eq!(restored, expected);
    let roles = target_client
        .database("admin")
        .collection::<Document>("system.roles")
        .count_documents(doc! {"_id": id(&role)})
        .await
        .unwrap();
    assert_eq!(roles, 1, "the role is restored");

    // Their credentials work on the target, and the server resolves their roles.
    let mut granted = login(&host, &db_name, &before, "pw-before").await.unwrap();
    granted.sort();
    let mut want = vec![format!("{role}@{db_name}"), format!("readWrite@{db_name}")];
    want.sort();
    assert_eq!(granted, want, "the custom role and the replayed grant");
    assert!(login(&host, &db_name, &before, "wrong").await.is_err());
    login(&host, &db_name, &after, "pw-after").await.unwrap();
    login(&host, &db_name, &changed, "new-pw").await.unwrap();
    assert!(
        login(&host, &db_name, &changed, "old-pw").await.is_err(),
        "the password change after the snapshot is replayed"
    );
    login(&host, &db_name, &shared, "target-pw").await.unwrap();
    assert!(
        login(&host, &db_name, &shared, "source-pw").await.is_err(),
        "the target's own user is left unchanged"
    );
    // The data came too, and the staging collections are gone.
    let things = target_client
        .database(&db_name)
        .collection::<Document>("things")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(things, 50);
    let admin_colls = target_client
        .database("admin")
        .list_collection_names()
        .await
        .unwrap();
    for staged in [STAGED_USERS_NS, STAGED_ROLES_NS] {
        let coll = staged.split_once('.').unwrap().1;
        assert!(!admin_colls.iter().any(|c| c == coll), "{admin_colls:?}");
    }

    // The source's users go with the test.
    for u in [&before, &changed, &after, &late, &shared] {
        let _ = db.run_command(doc! {"dropUser": u}).await;
    }
    let _ = db.run_command(doc! {"dropRole": &role}).await;
}

/// `mc-restore drill` with `policy` (MongoDB URI and scratch URI from the environment).
fn drill(policy: &std::path::Path, scratch_uri: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(workspace_bin("mc-restore"))
        .arg("drill")
        .arg("--policy")
        .arg(policy)
        .args(args)
        .env("MC_TEST_MONGODB_URI", mongodb_uri())
        .env("MC_TEST_SCRATCH_URI", scratch_uri)
        .output()
        .expect("mc-restore runs")
}

/// The verification entry of `ns` in a drill report.
fn check<'a>(report: &'a serde_json::Value, ns: &str) -> &'a serde_json::Value {
    report["verification"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["ns"] == ns)
        .unwrap_or_else(|| panic!("no check of {ns}: {report:#}"))
}

/// Drills with users and roles: refused (exit 1, naming the policy field) while no snapshot
/// captured them; then, with the policy's `drills.restore_users_and_roles`, the drill restores
/// them as at the point onto a scratch mongod it connects to as the scratch's own administrator,
/// verifies them against the source's `admin.system.users`/`system.roles` read at the restored
/// cluster time, leaves the scratch's own users (its administrator, a same-named user) as they
/// were, and removes what it added: at its cleanup, or at the next drill after `--keep`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drills_restore_and_verify_users_and_roles_and_spare_the_scratch_users() {
    let client = mongo_client().await;
    let SourceUsers {
        db_name,
        before,
        changed,
        dropped,
        after,
        shared,
        role,
        ..
    } = SourceUsers::create(&client, "drusr", 30).await;
    let db = client.database(&db_name);
    let read = || read_role(&db_name);

    let source_id = unique_name("drusr");
    let cap = Captured::start(&source_id).await;
    let plain = cap.snapshot(&db_name).await;
    cap.settle().await;
    let dir = cap.dir.path().to_owned();
    let flag_policy = mc_tests::agent::write_test_policy(
        &dir,
        "drill-users",
        &source_id,
        "MC_TEST_MONGODB_URI",
        "",
    );

    // The scratch: its own administrator, whom the drill connects as, and a user with the name
    // of a source user but its own password.
    let scratch = PrivateReplSet::start(Default::default()).await;
    let host = scratch.host(0);
    let scratch_client = scratch.node_client(0).clone();
    create_user(
        &scratch_client,
        "admin",
        "scratch_admin",
        "scratch-admin-pw",
        Bson::Array(vec![Bson::Document(doc! {"role": "root", "db": "admin"})]),
    )
    .await;
    create_user(&scratch_client, &db_name, &shared, "scratch-pw", read()).await;
    let scratch_uri = format!(
        "mongodb://scratch_admin:scratch-admin-pw@{host}/?replicaSet={}&authSource=admin",
        scratch.name()
    );
    let ns = format!("{db_name}.*");

    // No snapshot with users and roles yet: refused, naming the policy field to set.
    let out = drill(
        &flag_policy,
        &scratch_uri,
        &[
            "--scratch",
            &scratch_uri,
            "--ns",
            &ns,
            "--restore-users-and-roles",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("snapshots.include_users_and_roles: true")
            && said.contains(&plain.id)
            && said.contains("drills.restore_users_and_roles"),
        "{}",
        show(&out)
    );
    assert!(!said.contains("scratch-admin-pw"), "{}", show(&out));

    // A snapshot with them, then changes the oplog brings to the point.
    cap.snapshot_with(&SnapshotSettings {
        users_and_roles: true,
        ..cap.snapshot_settings(&db_name)
    })
    .await;
    create_user(&client, &db_name, &after, "pw-after", read()).await;
    db.run_command(doc! {"updateUser": &changed, "pwd": "new-pw"})
        .await
        .unwrap();
    db.run_command(
        doc! {"grantRolesToUser": &before, "roles": [{"role": "readWrite", "db": &db_name}]},
    )
    .await
    .unwrap();
    db.run_command(doc! {"dropUser": &dropped}).await.unwrap();
    let (dir, _repo) = cap.finish().await;

    // The policy asks for it: drills.restore_users_and_roles (with the snapshots' field on).
    let policy = mc_tests::agent::write_test_policy(
        dir.path(),
        "drill-users",
        &source_id,
        "MC_TEST_MONGODB_URI",
        "drills:\n  schedule: \"0 0 3 * * Sun\"\n  scratch_uri: { env: MC_TEST_SCRATCH_URI }\n  restore_users_and_roles: true\n",
    );
    let text = std::fs::read_to_string(&policy).unwrap().replace(
        "schedule: \"0 0 2 * * *\"\n",
        "schedule: \"0 0 2 * * *\"\n  include_users_and_roles: true\n",
    );
    std::fs::write(&policy, text).unwrap();
    let id = |u: &str| format!("{db_name}.{u}");
    let ours = |ids: Vec<String>| -> Vec<String> {
        ids.into_iter()
            .filter(|u| u.starts_with(&format!("{db_name}.")))
            .collect()
    };

    // Kept: the users as at the point stay on the scratch for inspection.
    let out_dir = dir.path().join("reports");
    let out = drill(
        &policy,
        &scratch_uri,
        &[
            "--ns",
            &ns,
            "--keep",
            "--json",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(!show(&out).contains("scratch-admin-pw"));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"], "pass", "{report:#}");
    assert_eq!(
        drill_phases(&report),
        ["plan", "prepare", "load", "replay", "indexes", "users", "verify", "cleanup"]
    );
    let users = check(&report, "admin.system.users");
    assert_eq!(users["method"], "source-at-T", "{report:#}");
    assert_eq!(users["status"], "match", "{report:#}");
    let details = users["details"].to_string();
    assert!(
        details.contains(&id(&shared)),
        "the kept scratch user is named: {details}"
    );
    assert_eq!(check(&report, "admin.system.roles")["status"], "match");
    assert_eq!(
        check(&report, &format!("{db_name}.things"))["status"],
        "match"
    );
    let merged = &report["users_and_roles"];
    assert_eq!(
        merged["kept_existing_users"],
        serde_json::json!([id(&shared)])
    );
    assert!(
        merged["roles"].to_string().contains(&id(&role)),
        "{report:#}"
    );
    let report_id = report["id"].as_str().unwrap();
    let md = std::fs::read_to_string(out_dir.join(format!("{report_id}.md"))).unwrap();
    assert!(
        md.contains("| admin.system.users | source-at-T | match |"),
        "{md}"
    );
    assert!(md.contains("Users and roles: "), "{md}");
    let html = std::fs::read_to_string(out_dir.join(format!("{report_id}.html"))).unwrap();
    assert!(html.contains("admin.system.users") && html.contains("Users and roles: "));
    // Hashed credentials are compared, never written into a report.
    let stored: Document = scratch_client
        .database("admin")
        .collection::<Document>("system.users")
        .find_one(doc! {"_id": id(&before)})
        .await
        .unwrap()
        .expect("restored");
    let stored_key = stored
        .get_document("credentials")
        .and_then(|c| c.get_document("SCRAM-SHA-256"))
        .and_then(|c| c.get_str("storedKey"))
        .unwrap()
        .to_owned();
    for text in [
        &md,
        &html,
        &String::from_utf8_lossy(&out.stdout).into_owned(),
    ] {
        assert!(!text.contains(&stored_key));
    }

    // On the scratch now: the users as at the point, with their passwords and roles...
    let mut expected = vec![id(&after), id(&before), id(&changed), id(&shared)];
    expected.sort();
    assert_eq!(ours(user_ids(&scratch_client).await), expected);
    login(&host, &db_name, &changed, "new-pw").await.unwrap();
    let mut granted = login(&host, &db_name, &before, "pw-before").await.unwrap();
    granted.sort();
    let mut want = vec![format!("{role}@{db_name}"), format!("readWrite@{db_name}")];
    want.sort();
    assert_eq!(granted, want);
    // ...and its own users as they were.
    login(&host, &db_name, &shared, "scratch-pw").await.unwrap();
    login(&host, "admin", "scratch_admin", "scratch-admin-pw")
        .await
        .unwrap();

    // The next drill removes what the kept one added before restoring (so the restored users
    // are compared, not taken for the scratch's own), and its cleanup removes its own.
    let out = drill(&policy, &scratch_uri, &["--ns", &ns, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"], "pass", "{report:#}");
    assert_eq!(
        report["users_and_roles"]["kept_existing_users"],
        serde_json::json!([id(&shared)]),
        "{report:#}"
    );
    assert_eq!(
        report["users_and_roles"]["kept_existing_roles"],
        serde_json::json!([])
    );
    assert_eq!(ours(user_ids(&scratch_client).await), vec![id(&shared)]);
    login(&host, &db_name, &shared, "scratch-pw").await.unwrap();
    login(&host, "admin", "scratch_admin", "scratch-admin-pw")
        .await
        .unwrap();
    let roles_left = scratch_client
        .database("admin")
        .collection::<Document>("system.roles")
        .count_documents(doc! {"_id": id(&role)})
        .await
        .unwrap();
    assert_eq!(roles_left, 0, "the restored role is removed");
    let admin_colls = scratch_client
        .database("admin")
        .list_collection_names()
        .await
        .unwrap();
    for left in ["mc_drill_authz", "mc_restore_users", "mc_restore_roles"] {
        assert!(!admin_colls.iter().any(|c| c == left), "{admin_colls:?}");
    }

    // Without the source: the restored users are counted on the scratch; replay changed them
    // after the snapshot, and the report says that only their presence is checked.
    let out = drill(
        &policy,
        &scratch_uri,
        &["--ns", &ns, "--no-source", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let users = check(&report, "admin.system.users");
    assert_eq!(users["method"], "snapshot-record", "{report:#}");
    assert_eq!(users["status"], "match", "{report:#}");
    assert!(
        users["details"]
            .to_string()
            .contains("changed by the replayed oplog"),
        "{report:#}"
    );
    assert_eq!(ours(user_ids(&scratch_client).await), vec![id(&shared)]);

    for u in [&before, &changed, &after, &shared] {
        let _ = db.run_command(doc! {"dropUser": u}).await;
    }
    let _ = db.run_command(doc! {"dropRole": &role}).await;
}

/// `mc-agent run` with `drills.restore_users_and_roles`: its scheduled drill restores the users
/// of a private source (a user, no custom role: `admin.system.roles` does not even exist) onto
/// the scratch, verifies them against the source and passes; the stored report says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_drills_restore_users_and_roles_from_the_policy() {
    use mc_tests::agent::free_port;
    let source = PrivateReplSet::start(Default::default()).await;
    let source_client = source.node_client(0).clone();
    source_client
        .database("interviews")
        .collection::<Document>("sessions")
        .insert_many((0..50).map(|i| doc! {"_id": i}))
        .await
        .unwrap();
    let read = Bson::Array(vec![Bson::Document(
        doc! {"role": "read", "db": "interviews"},
    )]);
    create_user(&source_client, "interviews", "app", "app-pw", read).await;
    let scratch = PrivateReplSet::start(Default::default()).await;
    let dir = tempfile::tempdir().unwrap();
    mc_core::crypto::keys::create_keyring_file(&dir.path().join("keyring")).unwrap();
    let port = free_port();
    let extra = format!(
        "capture:\n  seal_interval: 300ms\n  max_segment_bytes: 64KiB\n\
drills:\n  schedule: \"*/2 * * * * *\"\n  scratch_uri: {{ env: MC_SCRATCH_URI }}\n  restore_users_and_roles: true\n\
http:\n  listen: 127.0.0.1:{port}\n"
    );
    let policy = mc_tests::agent::write_test_policy(
        dir.path(),
        "scheduled-users",
        "sched",
        "MC_SOURCE_URI",
        &extra,
    );
    let text = std::fs::read_to_string(&policy).unwrap().replace(
        "schedule: \"0 0 2 * * *\"\n",
        "schedule: \"0 0 2 * * *\"\n  include_users_and_roles: true\n",
    );
    std::fs::write(&policy, text).unwrap();
    let log = dir.path().join("agent.log");
    let (mut agent, _) = mc_tests::agent::run_until_a_drill_passes(
        &policy,
        &source.uri(),
        &scratch.uri(),
        port,
        &log,
    )
    .await;
    mc_tests::bench::signal(agent.id(), "TERM").unwrap();
    assert!(agent.wait().unwrap().success());

    let out = std::process::Command::new(workspace_bin("mc-restore"))
        .args(["drill", "list", "--json", "--policy"])
        .arg(&policy)
        .env("MC_SOURCE_URI", source.uri())
        .env("MC_SCRATCH_URI", scratch.uri())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let passed = reports
        .as_array()
        .unwrap()
        .iter()
        .rfind(|r| r["verdict"] == "pass")
        .unwrap_or_else(|| panic!("a passing report: {reports:#}"));
    assert!(
        passed["phases"].to_string().contains("\"users\""),
        "{passed:#}"
    );
    let users = check(passed, "admin.system.users");
    assert_eq!(
        (&users["method"], &users["status"]),
        (
            &serde_json::json!("source-at-T"),
            &serde_json::json!("match")
        ),
        "{passed:#}"
    );
    assert!(
        users["details"].to_string().contains("1 of 1 users equal"),
        "{passed:#}"
    );
    assert_eq!(check(passed, "admin.system.roles")["status"], "match");
    assert_eq!(
        passed["users_and_roles"]["users"],
        serde_json::json!(["interviews.app"])
    );
    // Cleaned up: the scratch has no users left.
    assert!(user_ids(scratch.node_client(0)).await.is_empty());
}
