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
use mc_tests::restore::{mc_restore, repo_paths, show, Captured};
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
    let db_name = unique_db("usr");
    let db = client.database(&db_name);
    db.collection::<Document>("things")
        .insert_many((0..50).map(|i| doc! {"_id": i}))
        .await
        .unwrap();
    let name = |what: &str| format!("{what}_{db_name}");
    let (before, changed, dropped, after, late, shared, role) = (
        name("before"),
        name("changed"),
        name("dropped"),
        name("after"),
        name("late"),
        name("shared"),
        name("role"),
    );
    db.run_command(doc! {
        "createRole": &role,
        "privileges": [{"resource": {"db": &db_name, "collection": "things"}, "actions": ["find"]}],
        "roles": [],
    })
    .await
    .unwrap();
    create_user(
        &client,
        &db_name,
        &before,
        "pw-before",
        Bson::Array(vec![Bson::Document(doc! {"role": &role, "db": &db_name})]),
    )
    .await;
    let read = || Bson::Array(vec![Bson::Document(doc! {"role": "read", "db": &db_name})]);
    create_user(&client, &db_name, &changed, "old-pw", read()).await;
    create_user(&client, &db_name, &dropped, "pw-dropped", read()).await;
    create_user(&client, &db_name, &shared, "source-pw", read()).await;

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
